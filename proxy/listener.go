package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrSocketInUse is returned by Listen when another live process already
// serves the socket path (THREATS F8).
var ErrSocketInUse = errors.New("proxy: socket is in use by a running process")

// ListenOptions say where and how to create a Unix socket.
type ListenOptions struct {
	Path string
	// Mode is the socket file's permission bits. Default 0660.
	Mode os.FileMode
	// GID is the socket file's group; -1 keeps procmesh's own group.
	GID int
}

// Listen creates the Unix socket at opts.Path with opts.Mode and group.
//
// A socket file that nobody answers on is stale and is replaced; a socket a
// live process answers on is refused with ErrSocketInUse; any other file at
// the path is refused rather than deleted. The socket is bound inside a
// private 0700 directory, given its mode and group, and only then renamed
// into place, so no client ever sees it with looser permissions.
func Listen(opts ListenOptions) (*Socket, error) {
	if opts.Mode == 0 {
		opts.Mode = 0o660
	}
	if err := clearStale(opts.Path); err != nil {
		return nil, err
	}
	dir := filepath.Dir(opts.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("proxy: socket directory: %w", err)
	}
	tmpDir, err := os.MkdirTemp(dir, ".procmesh-bind-")
	if err != nil {
		return nil, fmt.Errorf("proxy: socket directory %s: %w", dir, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("proxy: listen on %s: %w", opts.Path, err)
	}
	l.SetUnlinkOnClose(false)
	// Per-write credentials before any client can connect: the
	// connections inherit them, and bytes written before accept carry
	// them too (THREATS I12).
	if err := passCred(l); err != nil {
		l.Close()
		return nil, err
	}
	if err := prepareSocket(tmp, opts); err != nil {
		l.Close()
		return nil, err
	}
	if err := os.Rename(tmp, opts.Path); err != nil {
		l.Close()
		return nil, fmt.Errorf("proxy: move socket into place at %s: %w", opts.Path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(opts.Path, &st); err != nil {
		l.Close()
		return nil, fmt.Errorf("proxy: stat socket %s: %w", opts.Path, err)
	}
	return &Socket{UnixListener: l, path: opts.Path, dev: st.Dev, ino: st.Ino}, nil
}

func prepareSocket(path string, opts ListenOptions) error {
	if err := os.Chmod(path, opts.Mode.Perm()); err != nil {
		return fmt.Errorf("proxy: chmod socket %s: %w", opts.Path, err)
	}
	if opts.GID >= 0 {
		if err := os.Chown(path, -1, opts.GID); err != nil {
			return fmt.Errorf("proxy: chgrp socket %s to gid %d: %w", opts.Path, opts.GID, err)
		}
	}
	return nil
}

// clearStale removes a stale socket at path, refuses a live one, and
// refuses to touch anything that is not a socket.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("proxy: inspect %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("proxy: %s exists and is not a socket; remove it or choose another socket path", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s answers connections (is another procmesh running?); stop it or choose another socket path", ErrSocketInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("proxy: probe existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("proxy: remove stale socket %s: %w", path, err)
	}
	return nil
}

// Socket is a listening Unix socket that procmesh created. Close stops
// listening and removes the socket file, unless a successor has already
// replaced it.
type Socket struct {
	*net.UnixListener
	path     string
	dev, ino uint64
	once     sync.Once
	err      error
}

// Path is the socket's file name.
func (s *Socket) Path() string { return s.path }

// Close stops listening and removes the socket file if it is still ours.
// It is idempotent.
func (s *Socket) Close() error {
	s.once.Do(func() {
		s.err = s.UnixListener.Close()
		var st syscall.Stat_t
		if syscall.Lstat(s.path, &st) == nil && st.Dev == s.dev && st.Ino == s.ino {
			os.Remove(s.path)
		}
	})
	return s.err
}
