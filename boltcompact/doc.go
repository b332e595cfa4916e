// Package boltcompact replaces a bbolt file by a compacted copy of itself,
// so that data deleted or overwritten in it leaves the file.
//
// bbolt is copy-on-write: a deleted or overwritten value stays in its freed
// page, readable in the file, until the page is reused, which may be
// never. Neither zeroing freed pages (bbolt internals) nor a page-by-page
// copy (tx.WriteTo copies freed pages too) removes it; bbolt.Compact,
// which writes only the live keys into a fresh file, does.
//
// # Swap
//
// Swap copies the live keys of an open database into PATH.compact (beside
// the file, same filesystem), syncs it, opens it, then renames it over
// PATH and syncs the directory. The caller must not write to the old
// database from the start of Swap on, and writes only to the new one once
// Swap returned it; readers may go on reading either (the content is the
// same). At every crash point PATH is either the old file or the complete
// copy, both holding every acknowledged write; a leftover PATH.compact is
// only ever an unfinished copy, which Clean removes.
//
// Freed filesystem blocks of the old file are the filesystem's and the
// disk's business: deleted data may remain there until overwritten, which
// only encryption of the disk addresses.
package boltcompact
