//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/procmesh/procmesh/echo"
)

// attempt is one line of the closing table: a caller, or an attack, sent
// through the sidecar and through procmesh alike.
type attempt struct {
	id   string // in the request path
	what string
	row  string // THREATS row
	// cmd is the process tree of the attempt; env carries PM_SOCK, PM_PATH
	// and PM_NEXT (the application). done undoes what it set up.
	cmd func(d *demo, env []string) (c *exec.Cmd, done func(), err error)
	// allowed: procmesh must forward the request as the application.
	allowed bool
	// check is what else procmesh's outcome must show.
	check func(d *demo, o *outcome) error
	// why says what procmesh relies on to refuse it.
	why string
	// tries is how often it is tried through procmesh (races).
	tries int
	// cell, when set, is the table's procmesh cell for an expected refusal.
	cell string
}

// raceWhy: procmesh attests a connection when it accepts it. If the exec
// came first, the kernel's connect-time record still names the program
// that called connect(); if not, procmesh attested the intruder itself.
// Which one happens is a race; both refuse and name the intruder.
const raceWhy = "attested at accept: the intruder itself if the exec came later, else the kernel's connect-time record " +
	"(cgroup/connect_unix BPF) names the program that called connect()"

// raceTries: the I11 attacks race procmesh's accept, so each is tried
// this often, as an attacker would retry until its exec wins; every try
// must be refused.
const raceTries = 10

var attempts = []attempt{
	{id: "app", what: "the application itself", row: "-", allowed: true,
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			return command(d.app, env, "request"), nil, nil
		}},
	{id: "co-located", what: "another program, same uid and cgroup", why: "SO_PEERCRED + pidfd name the process; its executable matches no entry", row: "I1",
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			return command(d.intruder, env, "request"), nil, nil
		},
		check: func(d *demo, o *outcome) error {
			if !strings.Contains(o.res.Body, "unix:path:"+d.intruder) {
				return fmt.Errorf("the 403 does not name the selectors it has: %q", o.res.Body)
			}
			return refusedAs("matches no registration entry", "intruder")(d, o)
		}},
	{id: "exec-write", what: "connect, exec the application, which writes", row: "I11", why: raceWhy, tries: raceTries,
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			return command(d.intruder, env, "exec-write"), nil, nil
		},
		check: refusedAs("", "intruder")},
	{id: "write-exec", what: "connect, write, exec the application", why: raceWhy, row: "I11", tries: raceTries,
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			return command(d.intruder, env, "write-exec"), nil, nil
		},
		check: refusedAs("", "intruder")},
	{id: "fork", what: "connect, fork an accomplice, exec the application; the accomplice writes", why: "SO_PASSCRED: the kernel attaches the writer's credentials to every write; the writer is not the attested process", row: "I11, I12",
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			return command(d.intruder, env, "fork"), nil, nil
		},
		check: refusedAs("", "intruder")},
	{id: "pass", what: "a child connects, passes the socket (SCM_RIGHTS), execs the application", why: "SO_PASSCRED: the kernel attaches the writer's credentials to every write; the writer is not the attested process", row: "I11, I12",
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			return command(d.intruder, env, "pass"), nil, nil
		},
		check: refusedAs("", "intruder")},
	{id: "steal", what: "take the application's connected socket (pidfd_getfd) and write on it", row: "I12",
		why: "SO_PASSCRED: the kernel attaches the writer's credentials to every write; the writer is not the attested process",
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			return command(d.intruder, env, "steal"), nil, nil
		},
		check: refusedAs("were written by process", "intruder")},
	{id: "cgroup", what: "forge the unit " + paymentsUnit + " in a delegated cgroup", why: "systemd:id, container:id, k8s:pod-uid come only from anchored, root-owned cgroups", row: "I15",
		cmd: forgedCgroup, check: noSelector("systemd:id:", "intruder"), cell: "no systemd:id (not an anchored, root-owned cgroup), no entry"},
	{id: "mountns", what: "bind-mount itself over the application's path (unshare -Urm)", why: "unix:path is given only for an executable path procmesh sees in its own mount namespace", row: "I16",
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			c := exec.Command("setpriv", "--reuid", fmt.Sprint(demoUID), "--regid", fmt.Sprint(demoUID), "--clear-groups",
				"unshare", "-Urm", "sh", "-c", `mount --bind "$1" "$2" && exec "$2" role request`, "sh", d.intruder, d.app)
			c.Env = env
			c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			return c, nil, nil
		},
		check: noSelector("unix:path:", "app"), cell: "no unix:path (another file there for procmesh), no entry"},
	{id: "preload", what: "run the application with LD_PRELOAD", why: "a dynamic-loader override in the environment (or a library mapped from outside the system directories) needs allow.injected_code", row: "I17",
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			return command(d.app, append(env, "LD_PRELOAD="+d.preload), "request"), nil, nil
		},
		check: refusedAs("injected code", "app")},
	{id: "tracer", what: "run the application under its tracer (PTRACE_TRACEME)", why: "a process traced now (TracerPid) or at connect() (the record) needs allow.traced", row: "I17",
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			return command(d.intruder, env, "trace"), nil, nil
		},
		check: refusedAs("traced", "app")},
	{id: "header", what: "the application claims spiffe://bench.test/admin in X-Forwarded-Client-Cert", why: "request_headers_to_remove strips identity headers a caller sends (XFCC by default)", row: "P9", allowed: true,
		cmd: func(d *demo, env []string) (*exec.Cmd, func(), error) {
			return command(d.app, append(env, "PM_HEADER="+forgedHeader), "request"), nil, nil
		},
		check: func(d *demo, o *outcome) error {
			if h := forged(o.rec); h != "" {
				o.short = "200 as app; forged XFCC reached the upstream"
				return fmt.Errorf("the upstream received the caller's %s", h)
			}
			return nil
		}},
}

// command runs bin in role as uid 1000.
func command(bin string, env []string, role string) *exec.Cmd {
	c := exec.Command(bin, "role", role)
	c.Env = env
	c.SysProcAttr = as1000()
	return c
}

// forgedCgroup is THREATS I15: root hands a service's cgroup to uid 1000,
// as systemd does for a unit with Delegate=yes running as that user (and
// for every user's user@UID.service); the intruder, started there, makes
// a cgroup named after another unit below it and moves itself in. The
// slice is the demo's own, so that tests making cgroups at the same time
// (attest's I15 tests use user@1000.service) are not disturbed.
func forgedCgroup(d *demo, env []string) (*exec.Cmd, func(), error) {
	slice := filepath.Join(d.cgMount, fmt.Sprintf("procmesh-demo-%d.slice", os.Getpid()))
	delegated := filepath.Join(slice, "procmesh-demo-tenant.service")
	forged := filepath.Join(delegated, paymentsUnit)
	done := func() {
		for _, dir := range []string{forged, delegated, slice} {
			syscall.Rmdir(dir)
		}
	}
	for _, dir := range []string{slice, delegated} {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			done()
			return nil, nil, err
		}
	}
	for _, f := range []string{"", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"} {
		if err := os.Chown(filepath.Join(delegated, f), demoUID, demoUID); err != nil {
			done()
			return nil, nil, err
		}
	}
	fd, err := syscall.Open(delegated, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		done()
		return nil, nil, err
	}
	c := command(d.intruder, append(env, "PM_CGROUP="+forged), "cgroup")
	c.SysProcAttr.UseCgroupFD, c.SysProcAttr.CgroupFD = true, fd
	return c, func() { syscall.Close(fd); done() }, nil
}

// forged names the first caller-made identity header the upstream got.
func forged(rec *echo.Record) string {
	if rec == nil {
		return ""
	}
	for _, h := range []string{"X-Forwarded-Client-Cert", "X-Spiffe-Id"} {
		if len(rec.Header[h]) > 0 {
			return h + ": " + rec.Header[h][0]
		}
	}
	return ""
}

// auditFields is what the demo reads of an audit line.
type auditFields struct {
	Refused       string   `json:"refused"`
	PID           int      `json:"pid"`
	Exe           string   `json:"exe"`
	SHA256        string   `json:"sha256"`
	Selectors     []string `json:"selectors"`
	ConnectRecord string   `json:"connect_record"`
	WriterPID     int      `json:"writer_pid"`
	WriterExe     string   `json:"writer_exe"`
	SPIFFEID      string   `json:"spiffe_id"`
}

func parseAudit(line string) (auditFields, error) {
	var a auditFields
	err := json.Unmarshal([]byte(line), &a)
	return a, err
}

// refusedAs checks that procmesh's audit line says why (when why is not
// empty) and names the program that acted: bin is "intruder" or "app".
func refusedAs(why, bin string) func(d *demo, o *outcome) error {
	return func(d *demo, o *outcome) error {
		a, err := parseAudit(o.audit)
		if err != nil {
			return fmt.Errorf("audit line %q: %v", o.audit, err)
		}
		if !strings.Contains(a.Refused, why) {
			return fmt.Errorf("the audit line's reason %q does not say %q", a.Refused, why)
		}
		path := d.intruder
		if bin == "app" {
			path = d.app
		}
		// By path, or by the executable's dev:inode in the kernel's
		// connect-time record.
		if !strings.Contains(o.audit, `"`+path+`"`) && !strings.Contains(o.audit, `(`+path+`)`) &&
			!strings.Contains(o.audit, " "+strings.TrimPrefix(devIno(path), "dev:inode ")) {
			return fmt.Errorf("the audit line does not name %s: %s", path, o.audit)
		}
		return nil
	}
}

// noSelector checks that the refused process got no selector with prefix.
func noSelector(prefix, bin string) func(d *demo, o *outcome) error {
	named := refusedAs("matches no registration entry", bin)
	return func(d *demo, o *outcome) error {
		if err := named(d, o); err != nil {
			return err
		}
		a, _ := parseAudit(o.audit)
		for _, s := range a.Selectors {
			if strings.HasPrefix(s, prefix) {
				return fmt.Errorf("the forged %s reached procmesh's selectors: %q", prefix, a.Selectors)
			}
		}
		return nil
	}
}

// attempts runs every attempt through both proxies, says what happened,
// prints the closing table and fails if an outcome is not the expected one.
func (d *demo) attempts() error {
	vias := []via{{"sidecar", d.hapSock}, {"procmesh", d.pmSock}}
	type row struct {
		a       attempt
		sidecar outcome
		pm      outcome
	}
	var rows []row
	failed := 0
	for i, a := range attempts {
		d.say("\n%d. %s (THREATS %s)", i+1, a.what, a.row)
		r := row{a: a}
		for _, v := range vias {
			var o outcome
			if v.name == "sidecar" {
				o = d.try(a, v, "")
				d.judgeSidecar(a, &o)
				r.sidecar = o
			} else {
				o = d.tryProcmesh(a, v)
				r.pm = o
			}
			verdict := "as expected"
			if o.err != nil {
				verdict = "UNEXPECTED: " + o.err.Error()
				failed++
			}
			d.say("   %-8s %s  [%s]", v.name, o.short, verdict)
			if a.id == "cgroup" && v.name == "procmesh" {
				d.say("            the intruder wrote from cgroup %s", o.res.Cgroup)
			}
			if v.name == "procmesh" && a.id == "preload" {
				d.say("            the library: %s", d.preloadNote)
			}
			if v.name == "procmesh" && a.id == "co-located" {
				d.say("            it was answered: %d %s", o.res.Status, strings.ReplaceAll(o.res.Body, "\n", "\n              "))
			}
			if v.name == "procmesh" && a.why != "" {
				d.say("            why: %s", a.why)
			}
			if v.name == "procmesh" && o.audit != "" && !a.allowed {
				d.say("            audit: %s", d.auditSummary(o.audit))
			}
		}
		rows = append(rows, r)
	}

	d.say("\n| # | attempt | THREATS | sidecar (HAProxy) | procmesh |")
	d.say("|---|---|---|---|---|")
	for i, r := range rows {
		d.say("| %d | %s | %s | %s | %s |", i+1, r.a.what, r.a.row, r.sidecar.short, r.pm.short)
	}
	if failed > 0 {
		return fmt.Errorf("%d outcome(s) differ from the expected ones (see UNEXPECTED above)", failed)
	}
	d.say("\nevery outcome as expected: the sidecar gave %s to every caller; procmesh only to the application", appID)
	return nil
}

// tryProcmesh runs attempt a through procmesh a.tries times (once if
// unset) and judges every outcome; with several tries the table cell
// counts the reasons. The first unexpected outcome, if any, is returned.
func (d *demo) tryProcmesh(a attempt, v via) outcome {
	if a.tries <= 1 {
		o := d.try(a, v, "")
		d.judgeProcmesh(a, &o)
		return o
	}
	var first outcome
	counts := map[string]int{}
	var order []string
	for i := 0; i < a.tries; i++ {
		o := d.try(a, v, fmt.Sprintf("/%d", i+1))
		d.judgeProcmesh(a, &o)
		// Show an unexpected outcome first, else one the connect-time
		// record refused (what these tries are about).
		if i == 0 || o.err != nil && first.err == nil ||
			first.err == nil && o.err == nil && strings.Contains(o.audit, `"connect_record"`) && !strings.Contains(first.audit, `"connect_record"`) {
			first = o
		}
		why := o.short
		if counts[why] == 0 {
			order = append(order, why)
		}
		counts[why]++
	}
	sort.SliceStable(order, func(i, j int) bool { return counts[order[i]] > counts[order[j]] })
	parts := make([]string, 0, len(order))
	for _, why := range order {
		parts = append(parts, fmt.Sprintf("%d× %s", counts[why], why))
	}
	first.short = fmt.Sprintf("%d tries: %s", a.tries, strings.Join(parts, ", "))
	return first
}

// try runs attempt a through v; suffix tells tries apart.
func (d *demo) try(a attempt, v via, suffix string) outcome {
	path := "/attempt/" + a.id + "/" + v.name + suffix
	env := []string{"PM_SOCK=" + v.sock, "PM_PATH=" + path, "PM_NEXT=" + d.app, "PATH=" + os.Getenv("PATH")}
	if g, ok := os.LookupEnv("GORACE"); ok { // a -race build's children (TestDemoAttack)
		env = append(env, "GORACE="+g)
	}
	c, done, err := a.cmd(d, env)
	if err != nil {
		return outcome{short: "could not run", err: err}
	}
	if done != nil {
		defer done()
	}
	res, err := launch(c)
	if err != nil {
		return outcome{short: "could not run", err: err}
	}
	o := outcome{res: res, rec: d.record(path)}
	if v.name == "procmesh" {
		o.audit = d.auditLine(path, res.Writer)
	}
	return o
}

// judgeSidecar: the sidecar forwards every attempt with the application's
// certificate; the header attempt's forged header reaches the upstream.
func (d *demo) judgeSidecar(a attempt, o *outcome) {
	switch {
	case o.err != nil:
		return
	case o.res.Status != 200 || o.rec == nil:
		o.short = fmt.Sprintf("%d %s", o.res.Status, o.res.Err)
		o.err = fmt.Errorf("the sidecar did not forward it (status %d %s)", o.res.Status, o.res.Err)
	case o.rec.SPIFFEID.String() != appID:
		o.short = "200 as " + o.rec.SPIFFEID.String()
		o.err = fmt.Errorf("the upstream saw %s, not the certificate HAProxy holds", o.rec.SPIFFEID)
	case a.id == "header":
		if h := forged(o.rec); h == "" {
			o.short = "200, header dropped"
			o.err = errors.New("HAProxy dropped the forged header; the demo assumed it forwards it (its default)")
		} else {
			o.short = "200 as app; forged XFCC reached the upstream"
		}
	case a.id == "app":
		o.short = "200 as app"
	default:
		o.short = "200 as app (taken)"
	}
}

// judgeProcmesh: the application (and the header attempt) get through as
// the application; everything else is refused with 403, nothing reaches
// the upstream, and the audit line says why and names the actor.
func (d *demo) judgeProcmesh(a attempt, o *outcome) {
	if o.err != nil {
		return
	}
	if a.allowed {
		switch {
		case o.res.Status != 200 || o.rec == nil:
			o.short = fmt.Sprintf("%d %s", o.res.Status, o.res.Err)
			o.err = fmt.Errorf("procmesh did not forward the application's request: %d %s %s", o.res.Status, o.res.Err, o.res.Body)
			return
		case o.rec.SPIFFEID.String() != appID:
			o.short = "200 as " + o.rec.SPIFFEID.String()
			o.err = fmt.Errorf("the upstream saw %s, want %s", o.rec.SPIFFEID, appID)
			return
		}
		o.short = "200 as app"
		if a.id == "header" {
			o.short = "200 as app; XFCC stripped"
		}
	} else {
		switch {
		case o.rec != nil:
			o.short = "200 as " + o.rec.SPIFFEID.String()
			o.err = fmt.Errorf("the upstream saw the request, as %s", o.rec.SPIFFEID)
			return
		case o.res.Status != 403:
			o.short = fmt.Sprintf("%d %s", o.res.Status, o.res.Err)
			o.err = fmt.Errorf("procmesh answered %d %s, want 403", o.res.Status, o.res.Err)
			return
		case o.audit == "":
			o.short = "403, no audit line"
			o.err = errors.New("procmesh wrote no audit line for it")
			return
		}
		o.short = "403: " + shortReason(o.audit)
		if a.tries > 1 && strings.Contains(o.audit, "matches no registration entry") {
			o.short = "403: attested as the intruder, before its exec"
		}
	}
	if a.check != nil {
		if err := a.check(d, o); err != nil {
			o.err = err
		}
	}
	if o.err == nil && a.cell != "" {
		o.short = "403: " + a.cell
	}
}

// shortReason is a table cell for a refusal's audit line.
func shortReason(line string) string {
	a, _ := parseAudit(line)
	switch r := a.Refused; {
	case strings.Contains(r, "ran another program when it called connect()"):
		return "exec'd after connect()"
	case strings.Contains(r, "exe changed") || strings.Contains(r, "process changed since"):
		return "exec'd during attestation"
	case strings.Contains(r, "were written by process"):
		return "written by another process"
	case strings.Contains(r, "traced"):
		return "traced"
	case strings.Contains(r, "is mapped executable"):
		return "injected code (a library mapped from outside the system directories)"
	case strings.Contains(r, "injected code"):
		return "injected code (a loader variable in its environment)"
	case strings.Contains(r, "matches no registration entry"):
		return "no entry matches its selectors"
	}
	r := strings.TrimPrefix(a.Refused, "workload: ")
	if i := strings.IndexAny(r, ";:"); i > 0 {
		r = r[:i]
	}
	return r
}

// auditSummary is the part of an audit line that names the actor.
func (d *demo) auditSummary(line string) string {
	a, err := parseAudit(line)
	if err != nil {
		return line
	}
	s := fmt.Sprintf("pid %d", a.PID)
	if a.Exe != "" {
		s += " exe " + a.Exe
	}
	if a.WriterExe != "" {
		s += fmt.Sprintf("; bytes written by pid %d exe %s", a.WriterPID, a.WriterExe)
	}
	if a.ConnectRecord != "" {
		s += "; connect_record " + a.ConnectRecord
		for _, bin := range []string{d.intruder, d.app} {
			if strings.Contains(a.ConnectRecord, "exe "+devIno(bin)+",") {
				s += " (dev:inode of " + bin + ")"
			}
		}
	}
	if len(a.Selectors) > 0 {
		s += "; selectors " + strings.Join(a.Selectors, " ")
	}
	refused := a.Refused
	for _, bin := range []string{d.intruder, d.app} {
		if di := devIno(bin); a.ConnectRecord == "" && strings.Contains(refused, di) || strings.Contains(refused, strings.TrimPrefix(di, "dev:inode ")+" ") {
			s += "\n            (" + di + " is " + bin + ")"
		}
	}
	return s + "\n            refused: " + refused
}

// devIno is the "dev:inode" procmesh's connect-time record names a file by.
func devIno(path string) string {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return "?"
	}
	return fmt.Sprintf("dev:inode %d:%d", st.Dev, st.Ino)
}
