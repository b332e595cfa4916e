package buildinfo

import (
	"runtime/debug"
	"strings"
	"sync"
)

// Info describes the running binary.
type Info struct {
	// Version is the main module's version ("(devel)" for a local build).
	Version string
	// Revision is the VCS revision the binary was built from ("" if
	// unknown); Modified says the work tree had uncommitted changes.
	Revision string
	Modified bool
	// GoVersion is the Go release that built the binary.
	GoVersion string
}

// Read returns the build information embedded in the binary
// (runtime/debug.ReadBuildInfo), parsed once. It is safe for concurrent
// use.
var Read = sync.OnceValue(read)

func read() Info {
	bi := Info{Version: "unknown", GoVersion: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return bi
	}
	bi.GoVersion = info.GoVersion
	if info.Main.Version != "" {
		bi.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			bi.Revision = s.Value
		case "vcs.modified":
			bi.Modified = s.Value == "true"
		}
	}
	return bi
}

// String returns one line such as "v1.2.0, revision 78ab311e6c2f, go1.26.8".
func (b Info) String() string {
	parts := []string{b.Version}
	if b.Revision != "" {
		rev := b.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if b.Modified {
			rev += "+modified"
		}
		parts = append(parts, "revision "+rev)
	}
	return strings.Join(append(parts, b.GoVersion), ", ")
}
