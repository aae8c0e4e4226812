package attest

import (
	"errors"
	"slices"
	"testing"
)

func TestParseMapsLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want mapping
		exec bool
		err  bool
	}{
		{name: "library text", in: "7f1eb6815000-7f1eb696b000 r-xp 00026000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6",
			want: mapping{start: 0x7f1eb6815000, end: 0x7f1eb696b000, major: 0xfe, minor: 0, ino: 326269, path: "/usr/lib/x86_64-linux-gnu/libc.so.6"}, exec: true},
		{name: "data", in: "7f1eb69c2000-7f1eb69c4000 rw-p 001d3000 fe:00 326269   /usr/lib/x86_64-linux-gnu/libc.so.6",
			want: mapping{start: 0x7f1eb69c2000, end: 0x7f1eb69c4000, major: 0xfe, ino: 326269, path: "/usr/lib/x86_64-linux-gnu/libc.so.6"}},
		{name: "vdso", in: "7f1eb69e2000-7f1eb69e4000 r-xp 00000000 00:00 0                          [vdso]",
			want: mapping{start: 0x7f1eb69e2000, end: 0x7f1eb69e4000, path: "[vdso]"}},
		{name: "anonymous exec", in: "7f1eb69e2000-7f1eb69e4000 rwxp 00000000 00:00 0 ",
			want: mapping{start: 0x7f1eb69e2000, end: 0x7f1eb69e4000}},
		{name: "path with spaces, deleted", in: "00400000-00452000 r-xp 00000000 08:02 173521      /opt/my app/bin (deleted)",
			want: mapping{start: 0x400000, end: 0x452000, major: 8, minor: 2, ino: 173521, path: "/opt/my app/bin (deleted)"}, exec: true},
		{name: "memfd", in: "7f0000000000-7f0000001000 r-xp 00000000 00:01 2049 /memfd:x (deleted)",
			want: mapping{start: 0x7f0000000000, end: 0x7f0000001000, minor: 1, ino: 2049, path: "/memfd:x (deleted)"}, exec: true},
		{name: "short", in: "7f1eb69e2000-7f1eb69e4000 r-xp 00000000", err: true},
		{name: "no range", in: "7f1eb69e2000 r-xp 00000000 00:00 0", err: true},
		{name: "reversed range", in: "2000-1000 r-xp 00000000 00:00 0", err: true},
		{name: "bad perms", in: "1000-2000 r-x 00000000 00:00 0", err: true},
		{name: "bad device", in: "1000-2000 r-xp 00000000 0000 0", err: true},
		{name: "bad inode", in: "1000-2000 r-xp 00000000 00:00 -1", err: true},
		{name: "empty", in: "", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, exec, err := parseMapsLine([]byte(tc.in))
			if tc.err {
				if !errors.Is(err, errMapsFormat) {
					t.Fatalf("err %v, want errMapsFormat", err)
				}
				return
			}
			if err != nil || m != tc.want || exec != tc.exec {
				t.Fatalf("= %+v exec %v err %v, want %+v exec %v", m, exec, err, tc.want, tc.exec)
			}
		})
	}
}

func FuzzParseMapsLine(f *testing.F) {
	f.Add([]byte("7f1eb6815000-7f1eb696b000 r-xp 00026000 fe:00 326269   /usr/lib/libc.so.6"))
	f.Add([]byte("00400000-00452000 r-xp 00000000 08:02 173521      /opt/my app/bin (deleted)"))
	f.Add([]byte("1-2 ---- 0 0:0 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, exec, err := parseMapsLine(b)
		if err == nil && m.end <= m.start {
			t.Fatalf("range %x-%x accepted", m.start, m.end)
		}
		if exec && (err != nil || m.ino == 0) {
			t.Fatalf("exec with err %v ino %d", err, m.ino)
		}
	})
}

func TestLoaderOverride(t *testing.T) {
	for in, want := range map[string]string{
		"LD_PRELOAD=/tmp/x.so":     "LD_PRELOAD=/tmp/x.so in its environment",
		"LD_AUDIT=a.so":            "LD_AUDIT=a.so in its environment",
		"LD_LIBRARY_PATH=/opt/lib": "LD_LIBRARY_PATH=/opt/lib in its environment",
		"GCONV_PATH=/tmp":          "GCONV_PATH=/tmp in its environment",
		"LD_PRELOAD=":              "", // empty: the loader loads nothing
		"LD_PRELOADX=/tmp/x.so":    "",
		"XLD_PRELOAD=/tmp/x.so":    "",
		"LD_BIND_NOW=1":            "",
		"PATH=/usr/bin":            "",
	} {
		if got := loaderOverride([]byte(in)); got != want {
			t.Errorf("loaderOverride(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseLdSoConf(t *testing.T) {
	conf := "# comment\ninclude /etc/ld.so.conf.d/*.conf\ninclude\tlocal/*.conf more.conf\n" +
		"/usr/local/lib # trailing\n/opt/a:/opt/b,/opt/c /opt/d/\nrelative/dir\nhwcap 0 nosegneg\n"
	dirs, includes := parseLdSoConf([]byte(conf), "/etc")
	if want := []string{"/usr/local/lib", "/opt/a", "/opt/b", "/opt/c", "/opt/d"}; !slices.Equal(dirs, want) {
		t.Errorf("dirs %q, want %q", dirs, want)
	}
	if want := []string{"/etc/ld.so.conf.d/*.conf", "/etc/local/*.conf", "/etc/more.conf"}; !slices.Equal(includes, want) {
		t.Errorf("includes %q, want %q", includes, want)
	}
}

func TestUnderDir(t *testing.T) {
	for _, tc := range []struct {
		p, dir string
		want   bool
	}{
		{"/usr/lib/libc.so.6", "/usr/lib", true},
		{"/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib", true},
		{"/usr/lib", "/usr/lib", true},
		{"/usr/lib64/libc.so.6", "/usr/lib", false},
		{"/usr/libexec/x", "/usr/lib", false},
		{"/x", "/", true},
	} {
		if got := underDir(tc.p, tc.dir); got != tc.want {
			t.Errorf("underDir(%q, %q) = %v", tc.p, tc.dir, got)
		}
	}
}
