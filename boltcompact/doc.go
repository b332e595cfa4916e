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
// Begin copies the live keys that a transaction sees into PATH.compact
// (beside the file, same filesystem) and returns the copy, open: from a
// read transaction, while others go on writing the file. The caller may
// then bring the copy up to date through Copy.DB (the store replays the
// paths committed since its snapshot). Copy.Install syncs the copy,
// renames it over PATH and syncs the directory; Swap does all of it for a
// database nobody writes meanwhile. The caller writes only to the new
// database once Install returned it; readers may finish on the old one,
// which the caller closes. At every crash point PATH is either the old
// file or the complete copy, both holding every acknowledged write (the
// caller's writes to the copy are made durable with it, before the
// rename); a leftover PATH.compact is only ever an unfinished copy, which
// Clean removes.
//
// Freed filesystem blocks of the old file are the filesystem's and the
// disk's business: deleted data may remain there until overwritten, which
// only encryption of the disk addresses.
package boltcompact
