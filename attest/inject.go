package attest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// loaderVars are the environment variables that make the dynamic loader
// (glibc's and musl's ld.so, glibc's iconv) run code the executable did not
// ask for: a process started with any of them set (non-empty) attests with
// InjectedCode.
var loaderVars = []string{"LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "GCONV_PATH"}

// defaultLibraryDirs are the directories ld.so searches without
// configuration; /etc/ld.so.conf adds more (LibraryDirs).
var defaultLibraryDirs = []string{"/lib", "/lib64", "/usr/lib", "/usr/lib64"}

// maxInjectedReasons bounds Process.InjectedCode, so a process mapping
// thousands of foreign files does not make a huge refusal message.
const maxInjectedReasons = 8

// mapping is an executable, file-backed line of /proc/PID/maps.
type mapping struct {
	start, end uint64
	major      uint32
	minor      uint32
	ino        uint64
	path       string // as the kernel prints it, " (deleted)" included
}

var errMapsFormat = errors.New("malformed maps line")

// parseMapsLine parses one line of /proc/PID/maps (proc(5)):
// "start-end perms offset major:minor inode   path". It reports exec=false
// for a mapping that is not executable or not backed by a file (inode 0:
// anonymous memory, [vdso], [stack]). It never panics.
func parseMapsLine(line []byte) (m mapping, exec bool, err error) {
	fail := func(what string) (mapping, bool, error) {
		return mapping{}, false, fmt.Errorf("%w: %s: %q", errMapsFormat, what, truncate(string(line), 120))
	}
	fields := make([][]byte, 0, 5)
	rest := line
	for len(fields) < 5 {
		f, r := nextField(rest)
		if len(f) == 0 {
			return fail("fewer than 5 fields")
		}
		fields = append(fields, f)
		rest = r
	}
	lo, hi, ok := bytes.Cut(fields[0], []byte{'-'})
	if !ok {
		return fail("no address range")
	}
	if m.start, ok = parseHex(lo, 64); !ok {
		return fail("bad start address")
	}
	if m.end, ok = parseHex(hi, 64); !ok || m.end <= m.start {
		return fail("bad end address")
	}
	perms := fields[1]
	if len(perms) != 4 {
		return fail("bad permissions")
	}
	maj, min, ok := bytes.Cut(fields[3], []byte{':'})
	if !ok {
		return fail("bad device")
	}
	major, ok1 := parseHex(maj, 32)
	minor, ok2 := parseHex(min, 32)
	if !ok1 || !ok2 {
		return fail("bad device")
	}
	m.major, m.minor = uint32(major), uint32(minor)
	if m.ino, ok = parseUint(fields[4], 64); !ok {
		return fail("bad inode")
	}
	// The path is the rest after the padding; it may contain spaces.
	m.path = string(bytes.TrimLeft(rest, " \t"))
	return m, perms[2] == 'x' && m.ino != 0, nil
}

// parseHex parses a non-empty run of lowercase or uppercase hex digits that
// fits in bits.
func parseHex(b []byte, bits int) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b), 16, bits)
	return n, err == nil
}

// loaderOverride returns the reason to report when the environment entry kv
// ("NAME=value") is a non-empty dynamic-loader override, else "".
func loaderOverride(kv []byte) string {
	for _, name := range loaderVars {
		if v, ok := bytes.CutPrefix(kv, []byte(name+"=")); ok && len(v) > 0 {
			return fmt.Sprintf("%s=%s in its environment", name, truncate(string(v), 200))
		}
	}
	return ""
}

// DefaultLdSoConf is where the dynamic loader's extra library directories
// are configured.
const DefaultLdSoConf = "/etc/ld.so.conf"

// systemLibraryDirs returns ld.so's default directories and those of the
// ld.so.conf file conf (with its includes), each resolved through symlinks;
// directories that do not exist are left out.
func systemLibraryDirs(conf string) []string {
	dirs := slices.Clone(defaultLibraryDirs)
	seen := map[string]bool{}
	var read func(file string, depth int)
	read = func(file string, depth int) {
		if depth > 8 || seen[file] {
			return
		}
		seen[file] = true
		b, err := os.ReadFile(file)
		if err != nil {
			return
		}
		d, includes := parseLdSoConf(b, filepath.Dir(file))
		dirs = append(dirs, d...)
		for _, pat := range includes {
			matches, _ := filepath.Glob(pat)
			for _, m := range matches {
				read(m, depth+1)
			}
		}
	}
	read(conf, 0)
	return resolveDirs(dirs)
}

// resolveDirs resolves dirs through symlinks and deduplicates them, keeping
// the order; a directory that cannot be resolved is left out.
func resolveDirs(dirs []string) []string {
	var out []string
	for _, d := range dirs {
		r, err := filepath.EvalSymlinks(d)
		if err != nil || !path.IsAbs(r) || slices.Contains(out, r) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// underDir reports whether the clean absolute path p is dir or below it.
func underDir(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// parseLdSoConf returns the directories and include patterns of one
// ld.so.conf file (ldconfig(8)): "#" starts a comment, "include PATTERN"
// names more files (relative to dir, the including file's directory),
// "hwcap" lines are ignored, anything else is directory names separated by
// spaces, tabs, colons or commas. Relative directory names are ignored, as
// ldconfig does.
func parseLdSoConf(b []byte, dir string) (dirs, includes []string) {
	for line := range bytes.Lines(b) {
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		switch {
		case len(line) == 0:
		case bytes.HasPrefix(line, []byte("include")) && len(line) > 7 && (line[7] == ' ' || line[7] == '\t'):
			for _, pat := range strings.Fields(string(line[8:])) {
				if !path.IsAbs(pat) {
					pat = path.Join(dir, pat)
				}
				includes = append(includes, pat)
			}
		case bytes.HasPrefix(line, []byte("hwcap")) && len(line) > 5 && (line[5] == ' ' || line[5] == '\t'):
		default:
			for _, d := range strings.FieldsFunc(string(line), func(r rune) bool {
				return r == ' ' || r == '\t' || r == ':' || r == ','
			}) {
				if path.IsAbs(d) {
					dirs = append(dirs, path.Clean(d))
				}
			}
		}
	}
	return dirs, includes
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
