// Package credread reads a Unix stream socket together with who wrote
// what it read (THREATS I12). With SO_PASSCRED set on the receiving
// socket, Linux attaches the writing process's credentials to every write
// and never returns bytes of two different writers in one read
// (unix_stream_read_generic), so each read is attributed to exactly one
// process: the one SCM_CREDENTIALS names.
//
// It leaves out what to do with a foreign writer; package proxy decides.
package credread
