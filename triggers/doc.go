// Package triggers loads and runs the commands that replds pull executes when
// the mirrored tree changes.
//
// A trigger is a JSON file in the triggers directory named NAME or
// NAME.json, NAME without a dot (so editor backups, package-manager
// leftovers and hidden files are ignored, each named in a debug line):
//
//	{
//	  "path":    "/certs/web",                      // remote prefix watched
//	  "command": "systemctl reload nginx",          // or ["argv0", "arg", ...]
//	  "timeout": "60s",                             // optional, default 60s
//	  "wait":    {"min": "1s", "max": "10s"}        // optional quiescence
//	}
//
// A string command runs under /bin/sh -c, an array runs as is. The command
// gets REPLDS_PATH (the trigger's prefix) and REPLDS_STORE (the local mirror
// directory; with pull --atomic, the symlink to the current snapshot, which
// does not move while a command runs) in its environment and, on stdin, the
// changed remote paths as {"added": [...], "changed": [...], "deleted":
// [...]}.
//
// Invariants:
//   - A malformed file never stops the others: it is skipped and reported
//     as an error naming the file and what is wrong (the field, for a
//     field); Runner.Malformed keeps the errors, for a run that must fail
//     on them (pull --once).
//   - Triggers are listed in file-name order; that is the order they run in.
//   - A command runs in its own process group, and the whole group is killed
//     when the timeout expires or the caller's context ends.
//
// Which trigger runs for which batch, and remembering what each trigger has
// handled across restarts, is the watcher's job (package watcher); this
// package only loads triggers and runs one command at a time.
package triggers
