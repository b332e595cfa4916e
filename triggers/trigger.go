package triggers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/replds/replds/nodepath"
	"github.com/replds/replds/strictjson"
)

// DefaultTimeout is how long a command may run when its file sets no timeout.
const DefaultTimeout = 60 * time.Second

// maxFileSize bounds a trigger file; anything larger is not a trigger.
const maxFileSize = 64 << 10

// ErrMalformed wraps every error about the content of a trigger file.
var ErrMalformed = errors.New("triggers: malformed trigger")

// Trigger is one loaded trigger file. It is a plain value: copies are
// independent and safe to share between goroutines.
type Trigger struct {
	// Name is the file name without ".json"; it identifies the trigger (its
	// pending changes and progress) and orders the runs.
	Name string
	// Path is the remote prefix the trigger watches (segment-bounded).
	Path string
	// Argv is the command line. A command given as a string in the file is
	// ["/bin/sh", "-c", string].
	Argv []string
	// Timeout bounds a run; the process group is killed when it expires.
	Timeout time.Duration
	// Wait, when non-zero, delays a run until changes under Path stopped
	// for Wait.Min, but no longer than Wait.Max after the first change.
	Wait Wait
}

// Wait is a trigger's quiescence window.
type Wait struct {
	Min, Max time.Duration
}

// Changes are the remote paths a run reports to its command on stdin. Each
// list is sorted and never nil, so the JSON always has three arrays.
type Changes struct {
	Added   []string `json:"added"`
	Changed []string `json:"changed"`
	Deleted []string `json:"deleted"`
}

// Len returns the number of paths in c.
func (c Changes) Len() int { return len(c.Added) + len(c.Changed) + len(c.Deleted) }

// fileJSON is the on-disk form of a trigger.
type fileJSON struct {
	Path    string          `json:"path"`
	Command json.RawMessage `json:"command"`
	Timeout string          `json:"timeout"`
	Wait    *struct {
		Min string `json:"min"`
		Max string `json:"max"`
	} `json:"wait"`
}

// Parse decodes the trigger file called name. Unknown fields are refused so
// that a typo does not silently disable an option. Errors wrap ErrMalformed
// and name the file.
func Parse(name string, data []byte) (Trigger, error) {
	t, err := parse(name, data)
	if err != nil {
		return Trigger{}, fmt.Errorf("%w %q: %v", ErrMalformed, name, err)
	}
	return t, nil
}

func parse(name string, data []byte) (Trigger, error) {
	var f fileJSON
	if err := strictjson.Decode(data, &f); err != nil {
		return Trigger{}, err
	}
	// web and web.json are one trigger: renaming the file keeps its
	// pending changes and progress.
	t := Trigger{Name: strings.TrimSuffix(name, ".json"), Path: f.Path, Timeout: DefaultTimeout}
	if f.Path == "" {
		return Trigger{}, errors.New(`missing "path"`)
	}
	if err := nodepath.ValidatePrefix(f.Path); err != nil {
		return Trigger{}, fmt.Errorf(`"path": %w`, err)
	}
	argv, err := parseCommand(f.Command)
	if err != nil {
		return Trigger{}, err
	}
	t.Argv = argv
	if f.Timeout != "" {
		d, err := positiveDuration("timeout", f.Timeout)
		if err != nil {
			return Trigger{}, err
		}
		t.Timeout = d
	}
	if f.Wait != nil {
		min, err := positiveDuration("wait.min", f.Wait.Min)
		if err != nil {
			return Trigger{}, err
		}
		// Without a cap, a steady trickle of changes would postpone the
		// run forever.
		max := 10 * min
		if f.Wait.Max != "" {
			if max, err = positiveDuration("wait.max", f.Wait.Max); err != nil {
				return Trigger{}, err
			}
			if max < min {
				return Trigger{}, fmt.Errorf("wait.max %s is below wait.min %s", max, min)
			}
		}
		t.Wait = Wait{Min: min, Max: max}
	}
	return t, nil
}

func parseCommand(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New(`missing "command"`)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if strings.TrimSpace(s) == "" {
			return nil, errors.New(`empty "command"`)
		}
		return []string{"/bin/sh", "-c", s}, nil
	}
	var argv []string
	if err := json.Unmarshal(raw, &argv); err != nil {
		return nil, errors.New(`"command" must be a string or an array of strings`)
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New(`empty "command"`)
	}
	return argv, nil
}

func positiveDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("missing %q", field)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %v", field, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s must be positive, got %s", field, s)
	}
	return d, nil
}

// Load reads every trigger file of dir (regular files, or symlinks to them,
// named NAME or NAME.json, see Skip) and returns the valid ones in
// file-name order. A malformed or unreadable file is skipped: the returned
// error then joins one error per such file, each naming it, alongside the
// triggers that did load. Only a failure to list dir returns no triggers
// at all.
func Load(dir string) ([]Trigger, error) {
	res, err := load(dir)
	if err != nil {
		return nil, err
	}
	return res.list, errors.Join(res.fileErrs...)
}

// Skip reports why the directory entry name is not a trigger file, or ""
// if it is one: a trigger file is named NAME or NAME.json, NAME without a
// dot. Hidden files, editor backups (name~, #name#) and any other suffix
// (.bak, .swp, .dpkg-old, .rpmnew, ...) are not.
func Skip(name string) string {
	switch {
	case strings.HasPrefix(name, "."):
		return "hidden file"
	case strings.HasSuffix(name, "~"), strings.HasPrefix(name, "#"):
		return "editor backup"
	}
	stem := strings.TrimSuffix(name, ".json")
	if stem == "" || strings.Contains(stem, ".") {
		return "not named NAME or NAME.json"
	}
	return ""
}

// loaded is what load found in a directory.
type loaded struct {
	list     []Trigger
	fileErrs []error
	// skipped names the entries that are not trigger files, and why.
	skipped [][2]string
}

// load is Load with the per-file errors kept apart from the error of
// listing the directory, and the entries skipped.
func load(dir string) (loaded, error) {
	var res loaded
	entries, err := os.ReadDir(dir)
	if err != nil {
		return res, fmt.Errorf("triggers: read dir: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if why := Skip(name); why != "" {
			res.skipped = append(res.skipped, [2]string{name, why})
			continue
		}
		t, err := loadFile(filepath.Join(dir, name), name)
		if errors.Is(err, errSkip) {
			res.skipped = append(res.skipped, [2]string{name, "directory"})
			continue
		}
		if err != nil {
			res.fileErrs = append(res.fileErrs, err)
			continue
		}
		res.list = append(res.list, t)
	}
	slices.SortFunc(res.list, func(a, b Trigger) int { return strings.Compare(a.Name, b.Name) })
	// NAME and NAME.json are one trigger: both present is a mistake.
	for i := len(res.list) - 1; i > 0; i-- {
		if res.list[i].Name == res.list[i-1].Name {
			n := res.list[i].Name
			res.fileErrs = append(res.fileErrs, fmt.Errorf("%w %q and %q: one trigger in two files; remove one", ErrMalformed, n, n+".json"))
			res.list = slices.Delete(res.list, i-1, i+1)
			i--
		}
	}
	return res, nil
}

// errSkip marks a directory entry that is not a trigger file at all.
var errSkip = errors.New("not a trigger file")

func loadFile(path, name string) (Trigger, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Trigger{}, fmt.Errorf("triggers: %q: %w", name, err)
	}
	if fi.IsDir() {
		return Trigger{}, errSkip
	}
	if !fi.Mode().IsRegular() {
		return Trigger{}, fmt.Errorf("%w %q: not a regular file", ErrMalformed, name)
	}
	f, err := os.Open(path)
	if err != nil {
		return Trigger{}, fmt.Errorf("triggers: %q: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Trigger{}, fmt.Errorf("triggers: %q: %w", name, err)
	}
	if len(data) > maxFileSize {
		return Trigger{}, fmt.Errorf("%w %q: larger than %d bytes", ErrMalformed, name, maxFileSize)
	}
	return Parse(name, data)
}
