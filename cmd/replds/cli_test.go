package main

// The command line as an operator meets it: defaults from the environment
// and a config file, exit codes, error texts, timeouts and failover.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/replds/replds/server/servertest"
)

// newDefaultsCmd is a command with bound flags of each kind, for
// applyDefaults.
func newDefaultsCmd(name *string, peers *[]string, every *time.Duration, unbound *bool) *cobra.Command {
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	f := cmd.Flags()
	f.StringVar(name, "name", "builtin", "")
	f.StringArrayVar(peers, "peer", nil, "")
	f.DurationVar(every, "every", time.Second, "")
	f.BoolVar(unbound, "unbound", false, "")
	f.String("config", "", "")
	bindEnv(f, "name", "peer", "every", "config")
	return cmd
}

func TestApplyDefaults(t *testing.T) {
	dir := t.TempDir()
	n := 0
	conf := func(text string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d", n))
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // regexp
		want    string // name peers every unbound
	}{
		{"builtin", nil, nil, "", "builtin [] 1s false"},
		{"env", nil, map[string]string{"REPLDS_NAME": "e", "REPLDS_PEER": "a:1, b:2", "REPLDS_EVERY": "2s"}, "", "e [a:1 b:2] 2s false"},
		{"flag over env", []string{"--name=f", "--peer=c:3"}, map[string]string{"REPLDS_NAME": "e", "REPLDS_PEER": "a:1"}, "", "f [c:3] 1s false"},
		{"unbound flag ignores env", nil, map[string]string{"REPLDS_UNBOUND": "true"}, "", "builtin [] 1s false"},
		{"bad env value", nil, map[string]string{"REPLDS_EVERY": "soon"}, `^\$REPLDS_EVERY: invalid value "soon" for --every`, ""},
		{"file", []string{"--config=" + conf("# c\nname = file\n\npeer = a:1\npeer=b:2\nevery=3s\n")}, nil, "", "file [a:1 b:2] 3s false"},
		{"env over file", []string{"--config=" + conf("name = file\nevery = 3s\n")}, map[string]string{"REPLDS_NAME": "e"}, "", "e [] 3s false"},
		{"file from env", nil, map[string]string{"REPLDS_CONFIG": conf("name = viaenv\n")}, "", "viaenv [] 1s false"},
		{"unknown setting", []string{"--config=" + conf("name = x\nnmae = y\n")}, nil, `c\d+:2: unknown setting "nmae"`, ""},
		{"unbound setting", []string{"--config=" + conf("unbound = true\n")}, nil, `:1: unknown setting "unbound"`, ""},
		{"twice", []string{"--config=" + conf("name = a\nname = b\n")}, nil, `:2: name is set twice`, ""},
		{"no equals", []string{"--config=" + conf("name\n")}, nil, `:1: want name = value`, ""},
		{"bad file value", []string{"--config=" + conf("every = x\n")}, nil, `: every: invalid value "x" for --every`, ""},
		{"missing file", []string{"--config=" + filepath.Join(dir, "nope")}, nil, `--config: open .*no such file`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"REPLDS_NAME", "REPLDS_PEER", "REPLDS_EVERY", "REPLDS_UNBOUND", "REPLDS_CONFIG"} {
				t.Setenv(k, tc.env[k])
			}
			var (
				name    string
				peers   []string
				every   time.Duration
				unbound bool
			)
			cmd := newDefaultsCmd(&name, &peers, &every, &unbound)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			err := applyDefaults(cmd)
			if tc.wantErr != "" {
				if err == nil || !regexp.MustCompile(tc.wantErr).MatchString(err.Error()) || exitCode(err) != exitUsage {
					t.Fatalf("applyDefaults = %v (exit %d), want error matching %s, exit 2", err, exitCode(err), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%s %v %v %v", name, peers, every, unbound); got != tc.want {
				t.Errorf("after applyDefaults: %s, want %s", got, tc.want)
			}
		})
	}
}

// TestE2E_ClientEnvDefaults talks to a TLS cluster with every connection
// setting from the environment, as a shell with exported REPLDS_ variables
// does; --help names the variables.
func TestE2E_ClientEnvDefaults(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, ""))
	files := pki.Files(t, "client")
	env := []string{"REPLDS_SERVER=" + c.Addr(0), "REPLDS_TLS_CERT=" + files.Cert, "REPLDS_TLS_KEY=" + files.Key,
		"REPLDS_TLS_CA=" + files.CA, "REPLDS_TIMEOUT=5s", "REPLDS_DIAL_TIMEOUT=5s"}
	if _, errOut, code := runEnv(t, env, strings.NewReader("hello"), "store", "-", "/env/x"); code != 0 {
		t.Fatalf("store with settings from the environment: exit %d: %s", code, errOut)
	}
	if out, errOut, code := runEnv(t, env, nil, "cat", "/env/x"); code != 0 || out != "hello" {
		t.Fatalf("cat = %q, exit %d (%s), want hello", out, code, errOut)
	}
	// Without the certificate variables the server refuses the client.
	if _, _, code := runEnv(t, env[:1], nil, "cat", "/env/x"); code == 0 {
		t.Errorf("cat without TLS settings succeeded against a TLS server")
	}
	// A bad value in the environment is a usage error naming the variable.
	_, errOut, code := runEnv(t, append(env, "REPLDS_TIMEOUT=soon"), nil, "cat", "/env/x")
	if code != exitUsage || !strings.Contains(errOut, "$REPLDS_TIMEOUT") {
		t.Errorf("REPLDS_TIMEOUT=soon: exit %d, %q; want exit 2 naming $REPLDS_TIMEOUT", code, errOut)
	}
	for _, cmd := range []string{"cat", "ls", "rm", "store", "status", "pull"} {
		help := mustRun(t, cmd, "--help")
		for _, v := range []string{"REPLDS_SERVER", "REPLDS_TLS_CERT", "REPLDS_TLS_KEY", "REPLDS_TLS_CA"} {
			if !strings.Contains(help, "[$"+v+"]") {
				t.Errorf("replds %s --help does not name $%s", cmd, v)
			}
		}
		if cmd != "pull" && !strings.Contains(help, "[$REPLDS_TIMEOUT]") {
			t.Errorf("replds %s --help has no --timeout with $REPLDS_TIMEOUT", cmd)
		}
	}
}

// TestE2E_ServerEnvAndConfig starts a server whose settings come from the
// environment and a config file, the command line winning over both.
func TestE2E_ServerEnvAndConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "replds.conf")
	writeFiles(t, dir, map[string]string{"replds.conf": "# settings\naddr = 127.0.0.1:0\ngossip-addr = 127.0.0.1:0\n" +
		"gossip-profile = local\nname = from-file\n"})
	env := []string{"REPLDS_DATA_DIR=" + filepath.Join(dir, "data"), "REPLDS_NAME=from-env", "REPLDS_CONFIG=" + conf}
	p := startEnv(t, "server", env, "server", "--name=from-flag")
	addr := p.waitLine(startedRE)[1]
	out := mustRun(t, "status", "--server="+addr)
	if !strings.Contains(out, "server from-flag at") {
		t.Errorf("status:\n%s\nwant the name given by --name", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		t.Errorf("data dir from $REPLDS_DATA_DIR: %v", err)
	}
	p.kill(9)

	p = startEnv(t, "server2", env, "server")
	addr = p.waitLine(startedRE)[1]
	if out := mustRun(t, "status", "--server="+addr); !strings.Contains(out, "server from-env at") {
		t.Errorf("status:\n%s\nwant the name from $REPLDS_NAME over the file's", out)
	}
	p.kill(9)

	writeFiles(t, dir, map[string]string{"bad.conf": "addr = 127.0.0.1:0\ndata-dri = /tmp\n"})
	_, errOut, code := runEnv(t, nil, nil, "server", "--config="+filepath.Join(dir, "bad.conf"))
	if code != exitUsage || !strings.Contains(errOut, `bad.conf:2: unknown setting "data-dri"`) {
		t.Errorf("config with a typo: exit %d, %q; want exit 2 naming the line", code, errOut)
	}
}

func TestWithDefaultPort(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"localhost", "localhost:12100"},
		{"localhost:12200", "localhost:12200"},
		{"db1.example.net", "db1.example.net:12100"},
		{"10.0.0.1", "10.0.0.1:12100"},
		{"::1", "[::1]:12100"},
		{"[::1]", "[::1]:12100"},
		{"[::1]:5", "[::1]:5"},
		{"dns:///db1:7", "dns:///db1:7"},
		{"a:b:c", "error"},
		{"[x", "error"},
	} {
		got, err := withDefaultPort(tc.in)
		if err != nil {
			got = "error"
		}
		if got != tc.want {
			t.Errorf("withDefaultPort(%q) = %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestE2E_ExitCodes checks that each kind of failure has its exit code and
// a message without the servers' package names.
func TestE2E_ExitCodes(t *testing.T) {
	pki := servertest.NewPKI(t)
	c := servertest.NewCluster(t, 1, servertest.WithTLS(pki, "client / read\nclient /data write\n"))
	files := pki.Files(t, "client")
	tlsArgs := []string{"--server=" + c.Addr(0), "--tls-cert=" + files.Cert, "--tls-key=" + files.Key, "--tls-ca=" + files.CA}
	if _, errOut, code := run(t, strings.NewReader("x"), append([]string{"store"}, append(tlsArgs, "-", "/data/dir/leaf")...)...); code != 0 {
		t.Fatalf("store: %s", errOut)
	}
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	file := filepath.Join(t.TempDir(), "f")
	writeFiles(t, filepath.Dir(file), map[string]string{"f": "x"})
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cat", "/data/dir"}, exitFailure, "/data/dir: is a directory"},
		{[]string{"cat", "/data/nope"}, exitNotFound, "/data/nope: node not found"},
		{[]string{"ls", "/nope"}, exitNotFound, "/nope: node not found"},
		{[]string{"rm", "/data/nope"}, exitNotFound, "/data/nope: node not found"},
		{[]string{"store", file, "/other/x"}, exitPermission, "permission denied"},
		{[]string{"store", file, "/data/dir/leaf/under"}, exitFailure, "would lie under leaf"},
		{[]string{"store", file, "/"}, exitUsage, "invalid path"},
		{[]string{"cat", "relative"}, exitUsage, "not absolute"},
		{[]string{"cat"}, exitUsage, "accepts 1 arg"},
		{[]string{"cat", "--bogus", "/x"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"store", filepath.Join(t.TempDir(), "nope"), "/data/x"}, exitFailure, "no such file"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{tc.args[0]}, append(tlsArgs, tc.args[1:]...)...)
			_, errOut, code := run(t, nil, args...)
			checkFailure(t, errOut, code, tc.code, tc.want)
		})
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"cert", "frob"}, exitUsage, `unknown command "frob" for "replds cert"`},
		{[]string{"cat", "--server=" + closed, "/x"}, exitUnavailable, "connection refused"},
		{[]string{"status", "--server=" + closed}, exitUnavailable, "server " + closed + ": unavailable: connection refused"},
		{[]string{"ls", "--server=" + closed, "--server=" + closed, "/"}, exitUnavailable, "; server " + closed},
		{[]string{"cat", "/x"}, exitUsage, "no server"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, errOut, code := run(t, nil, tc.args...)
			checkFailure(t, errOut, code, tc.code, tc.want)
		})
	}
}

// checkFailure checks a failed command's exit code and its one line of
// stderr, which must hold want and no package prefix.
func checkFailure(t *testing.T, errOut string, code, wantCode int, want string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit %d, want %d (stderr %q)", code, wantCode, errOut)
	}
	if lines := strings.Count(strings.TrimSpace(errOut), "\n") + 1; lines != 1 || !strings.Contains(errOut, want) {
		t.Errorf("stderr = %q, want one line holding %q", errOut, want)
	}
	if m := regexp.MustCompile(`(^replds: |: )(store|server|nodepath|acl): `).FindString(errOut); m != "" {
		t.Errorf("stderr = %q: internal prefix %q", errOut, m)
	}
}

// silentServer accepts TCP connections and never answers, until the test
// ends.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestE2E_SilentServerIsLeft lists first a server that accepts TCP and
// never answers: each command moves on to the next server.
func TestE2E_SilentServerIsLeft(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	silent := silentServer(t)
	servers := []string{"--server=" + silent, "--server=" + c.Addr(0), "--dial-timeout=300ms"}
	if _, errOut, code := run(t, strings.NewReader("v"), append([]string{"store"}, append(servers, "-", "/s/x")...)...); code != 0 {
		t.Fatalf("store: exit %d: %s", code, errOut)
	}
	for _, args := range [][]string{{"cat", "/s/x"}, {"ls", "/s"}, {"status"}} {
		if _, errOut, code := run(t, nil, append([]string{args[0]}, append(servers, args[1:]...)...)...); code != 0 {
			t.Errorf("%s with a silent first server: exit %d: %s", args[0], code, errOut)
		}
	}
	// Alone, it is unavailable, and the message says how long it waited.
	_, errOut, code := run(t, nil, "cat", "--server="+silent, "--dial-timeout=300ms", "/s/x")
	checkFailure(t, errOut, code, exitUnavailable, "no answer within 300ms")
}

// TestE2E_ReadMetadata checks ls -l, ls --json and cat --meta: the time of
// the version, the size and the origin of each leaf.
func TestE2E_ReadMetadata(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	srv := "--server=" + c.Addr(0)
	before := time.Now().Add(-time.Second)
	if _, errOut, code := run(t, strings.NewReader("12345"), "store", srv, "-", "/m/dir/leaf"); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := run(t, strings.NewReader(strings.Repeat("x", 3000)), "store", srv, "-", "/m/big"); code != 0 {
		t.Fatal(errOut)
	}
	var st struct {
		Servers []struct {
			Origin string `json:"origin"`
		} `json:"servers"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "status", srv, "--json")), &st); err != nil || len(st.Servers) != 1 {
		t.Fatalf("status --json: %v", err)
	}
	origin := st.Servers[0].Origin

	var list []struct {
		Path   string     `json:"path"`
		Dir    bool       `json:"dir"`
		Time   *time.Time `json:"time"`
		Size   *uint64    `json:"size"`
		Origin string     `json:"origin"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "ls", srv, "--json", "/m")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Path != "/m/big" || list[1].Path != "/m/dir" || !list[1].Dir {
		t.Fatalf("ls --json /m = %+v", list)
	}
	if b := list[0]; *b.Size != 3000 || b.Origin != origin || b.Time.Before(before) || b.Time.After(time.Now()) {
		t.Errorf("ls --json: /m/big = size %d origin %s time %v; want 3000, %s, about now", *b.Size, b.Origin, b.Time, origin)
	}

	out := mustRun(t, "ls", srv, "-l", "-r", "/m")
	re := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\s+2\.9 KiB\s+` + origin + `\s+/m/big$`)
	if !re.MatchString(out) || !strings.Contains(out, " 5 B  "+origin+"  /m/dir/leaf") {
		t.Errorf("ls -l -r /m:\n%s", out)
	}

	out = mustRun(t, "cat", srv, "--meta", "/m/dir/leaf")
	for _, want := range []string{"path     /m/dir/leaf", "size     5 B", "origin   " + origin + " (write 1 of that server)"} {
		if !strings.Contains(out, want) {
			t.Errorf("cat --meta:\n%s\nwant a line %q", out, want)
		}
	}
	var meta struct {
		Path    string `json:"path"`
		Version uint64 `json:"version"`
		Size    uint64 `json:"size"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "cat", srv, "--json", "/m/dir/leaf")), &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Path != "/m/dir/leaf" || meta.Size != 5 || meta.Version == 0 {
		t.Errorf("cat --json = %+v", meta)
	}
	if strings.Contains(out, "12345") {
		t.Errorf("cat --meta printed the data")
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestE2E_Watch follows a prefix: the replay, "synced", then each change
// as it is made, deletes included, and never the data.
func TestE2E_Watch(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	srv := "--server=" + c.Addr(0)
	if _, errOut, code := run(t, strings.NewReader("secret-one"), "store", srv, "-", "/w/a"); code != 0 {
		t.Fatal(errOut)
	}
	w := start(t, "watch", "watch", srv, "/w")
	w.waitLine(regexp.MustCompile(`^\S+ \S+  put\s+10 B  [0-9a-f]{16}  /w/a$`))
	w.waitLine(regexp.MustCompile(`^synced$`))
	if _, errOut, code := run(t, strings.NewReader("secret-two"), "store", srv, "-", "/w/b"); code != 0 {
		t.Fatal(errOut)
	}
	mustRun(t, "rm", srv, "/w/a")
	if _, errOut, code := run(t, strings.NewReader("elsewhere"), "store", srv, "-", "/x"); code != 0 {
		t.Fatal(errOut)
	}
	w.waitLine(regexp.MustCompile(`  put\s+10 B  [0-9a-f]{16}  /w/b$`))
	w.waitLine(regexp.MustCompile(`  delete\s+-  [0-9a-f]{16}  /w/a$`))
	w.kill(syscall.SIGINT)
	if w.err != nil {
		t.Errorf("watch after SIGINT: %v, want exit 0", w.err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if strings.Contains(l, "secret") || strings.Contains(l, "/x") {
			t.Errorf("watch printed %q: data, or a path outside /w", l)
		}
	}
}

func TestACLCheck(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"acls": "s1 peer\nweb1 /hosts/web1 read\nops / write\nops /_replds/jobs write\n",
		"bad":  "web1 /hosts/web1 read\nweb2 /hosts reed\n",
	})
	good, bad := filepath.Join(dir, "acls"), filepath.Join(dir, "bad")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{good}, 0, "4 rules for 3 identities"},
		{[]string{good, "web1", "/hosts/web1/tls.key", "read"}, 0, `allowed: web1 /hosts/web1/tls.key read, by the rule "web1 /hosts/web1 read"`},
		{[]string{good, "web1", "/hosts/web10/tls.key", "r"}, exitPermission, "denied: web1 /hosts/web10/tls.key read"},
		{[]string{good, "web1", "/hosts/web1/tls.key", "write"}, exitPermission, "denied"},
		{[]string{good, "ops", "/_replds/status/x", "w"}, exitPermission, "denied"},
		{[]string{good, "ops", "/_replds/jobs/backup/b", "w"}, 0, `by the rule "ops /_replds/jobs write"`},
		{[]string{good, "s1", "peer"}, 0, "allowed: s1 peer"},
		{[]string{good, "web1", "peer"}, exitPermission, "denied: web1 peer"},
		{[]string{bad}, exitFailure, "bad: line 2: unknown operation \"reed\""},
		{[]string{good, "web1", "hosts", "read"}, exitUsage, "not absolute"},
		{[]string{good, "web1", "/hosts", "admin"}, exitUsage, "unknown operation"},
		{[]string{good, "web1"}, exitUsage, "want FILE, FILE IDENTITY PATH OP or FILE IDENTITY peer"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			out, errOut, code := run(t, nil, append([]string{"acl", "check"}, tc.args...)...)
			if tc.code != 0 {
				checkFailure(t, errOut, code, tc.code, tc.want)
				return
			}
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Errorf("acl check: exit %d, %q (%s); want 0 and %q", code, out, errOut, tc.want)
			}
		})
	}
}

// TestE2E_StatusText: sizes for people, and hashes as long as origins.
func TestE2E_StatusText(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	srv := "--server=" + c.Addr(0)
	if _, errOut, code := run(t, strings.NewReader(strings.Repeat("x", 2048)), "store", srv, "-", "/s"); code != 0 {
		t.Fatal(errOut)
	}
	out := mustRun(t, "status", srv)
	if !regexp.MustCompile(`(?m)^  nodes\s+1 \(2\.0 KiB\), 0 tombstones$`).MatchString(out) {
		t.Errorf("status:\n%s\nwant nodes with a human size", out)
	}
	for _, h := range regexp.MustCompile(`\b[0-9a-f]{8,}\b`).FindAllString(out, -1) {
		if len(h) != 16 {
			t.Errorf("status shows hash %s of %d digits; want 16 everywhere", h, len(h))
		}
	}
}

// TestE2E_CertSaysWhatItWrote: each cert command says which files it
// wrote, with their modes, and for whom a certificate is.
func TestE2E_CertSaysWhatItWrote(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cert", "ca", "--cert=" + ca, "--key=" + caKey}, `wrote CA "replds CA": certificate ` + ca + ` (0644), private key ` + caKey + ` (0600), valid 3650 days`},
		{[]string{"cert", "issue", "--ca=" + ca, "--ca-key=" + caKey, "--cn=web1", "--host=web1.example.net",
			"--cert=" + filepath.Join(dir, "w.crt"), "--key=" + filepath.Join(dir, "w.key")},
			`wrote identity "web1": certificate ` + filepath.Join(dir, "w.crt") + ` (0644), private key ` + filepath.Join(dir, "w.key") + ` (0600), for web1.example.net, valid until 20`},
		{[]string{"cert", "gossip-key", "--out=" + filepath.Join(dir, "g.key")}, "wrote gossip key " + filepath.Join(dir, "g.key") + " (0600)"},
	} {
		_, errOut, code := run(t, nil, tc.args...)
		if code != 0 || !strings.HasPrefix(errOut, tc.want) {
			t.Errorf("replds %s: exit %d, said %q; want %q", strings.Join(tc.args[:2], " "), code, errOut, tc.want)
		}
	}
}

func TestUserMessage(t *testing.T) {
	for in, want := range map[string]string{
		"store: node not found":                         "node not found",
		"list /nope: store: node not found":             "list /nope: node not found",
		"watcher: follow: config: prefix: invalid path": "config: prefix: invalid path",
		"no server: give --server":                      "no server: give --server",
		"server 127.0.0.1:1 unavailable: refused":       "server 127.0.0.1:1 unavailable: refused",
		"restore: not a backup":                         "restore: not a backup",
	} {
		if got := userMessage(in); got != want {
			t.Errorf("userMessage(%q) = %q, want %q", in, got, want)
		}
	}
}
