package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Flags get defaults from two places besides their built-in ones, in this
// order of precedence: the command line, then the environment (REPLDS_
// and the flag's name in upper case, dashes as underscores:
// --tls-cert reads REPLDS_TLS_CERT), then a --config file where the
// command has one (replds server). Only flags bound with bindEnv read
// either: a stray REPLDS_RECURSIVE must not make rm recursive.

// envAnnotation marks a flag bound with bindEnv; its value is the name of
// the environment variable.
const envAnnotation = "replds-env"

// envName returns the environment variable that flag name reads.
func envName(name string) string {
	return "REPLDS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// bindEnv gives the named flags of fs a default from the environment and
// says so in their usage, which --help shows; binding a flag twice is
// binding it once. It panics on a name fs does
// not define: that is a programming error.
func bindEnv(fs *pflag.FlagSet, names ...string) {
	for _, name := range names {
		f := fs.Lookup(name)
		if f == nil {
			panic("bindEnv: no flag --" + name)
		}
		if len(f.Annotations[envAnnotation]) > 0 {
			continue // bound already
		}
		env := envName(name)
		f.Usage += " [$" + env + "]"
		if err := fs.SetAnnotation(name, envAnnotation, []string{env}); err != nil {
			panic(err)
		}
	}
}

// bindAllEnv binds every flag of fs (bindEnv).
func bindAllEnv(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" {
			bindEnv(fs, f.Name)
		}
	})
}

// isListFlag reports whether f takes one value per use (--peer=A --peer=B):
// from the environment it takes a comma-separated list.
func isListFlag(f *pflag.Flag) bool {
	return strings.HasSuffix(f.Value.Type(), "Array") || strings.HasSuffix(f.Value.Type(), "Slice")
}

// applyDefaults sets the bound flags of cmd not given on the command line
// from the environment, then the rest from the --config file if cmd has
// one. A bad value is a usage error naming its source. It runs before
// RunE (the root's PersistentPreRunE).
func applyDefaults(cmd *cobra.Command) error {
	fs := cmd.Flags()
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		env := f.Annotations[envAnnotation]
		if err != nil || f.Changed || len(env) == 0 {
			return
		}
		v := os.Getenv(env[0])
		if v == "" {
			return
		}
		values := []string{v}
		if isListFlag(f) {
			values = splitList(v)
		}
		err = setFlag(f, values, "$"+env[0])
	})
	if err != nil {
		return err
	}
	if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
		return applyConfigFile(fs, f.Value.String())
	}
	return nil
}

// setFlag sets f to values, as if given on the command line, or returns a
// usage error naming source.
func setFlag(f *pflag.Flag, values []string, source string) error {
	for _, v := range values {
		if err := f.Value.Set(v); err != nil {
			return usageErrorf("%s: invalid value %q for --%s: %v", source, v, f.Name, err)
		}
	}
	f.Changed = true
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// applyConfigFile sets the bound flags of fs given neither on the command
// line nor in the environment from the file at path: one "name = value"
// per line, name a flag's name without dashes, a repeatable flag on one
// line per value; blank lines and lines starting with # are ignored. The
// whole file is checked before any flag is set.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	file, err := os.Open(path)
	if err != nil {
		return usageErrorf("--config: %v", err)
	}
	defer file.Close()
	type setting struct {
		flag   *pflag.Flag
		values []string
	}
	var order []*setting
	byName := map[string]*setting{}
	sc := bufio.NewScanner(file)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			return usageErrorf("%s:%d: want name = value", path, n)
		}
		f := fs.Lookup(name)
		if f == nil || len(f.Annotations[envAnnotation]) == 0 || name == "config" {
			return usageErrorf("%s:%d: unknown setting %q", path, n, name)
		}
		s := byName[name]
		if s == nil {
			s = &setting{flag: f}
			byName[name] = s
			order = append(order, s)
		} else if !isListFlag(f) {
			return usageErrorf("%s:%d: %s is set twice", path, n, name)
		}
		s.values = append(s.values, value)
	}
	if err := sc.Err(); err != nil {
		return usageErrorf("--config: %v", err)
	}
	for _, s := range order {
		if s.flag.Changed {
			continue
		}
		if err := setFlag(s.flag, s.values, fmt.Sprintf("%s: %s", path, s.flag.Name)); err != nil {
			return err
		}
	}
	return nil
}
