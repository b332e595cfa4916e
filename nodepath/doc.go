// Package nodepath holds the one set of rules for replds node paths: what a
// canonical path is (Validate, ValidatePrefix), what lies under a prefix
// (Under), and the prefix reserved for the cluster's own nodes (Reserved).
//
// It is a leaf: it imports only the standard library, so that the ACL
// parser, the pull client and its triggers check paths exactly as the
// servers do without importing the store. Every path a server accepts, an
// ACL rule names, or a pull client writes passes Validate here.
package nodepath
