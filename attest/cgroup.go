package attest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// cgroupInfo is what procmesh derives from /proc/PID/cgroup.
type cgroupInfo struct {
	Path        string // the v2 path, else the first v1 path
	ContainerID string // 64 lowercase hex, "" when none
	PodUID      string // Kubernetes pod UID with dashes, "" when none
	SystemdUnit string // "" when none
	// Sources name the cgroup directory each id was read from, one per id
	// and line: the Linux attestor drops an id when a directory on the way
	// down to one of its sources is not owned by root (I15).
	Sources []cgroupSource
}

// idKind names the kind of a cgroup-derived id.
type idKind uint8

const (
	kindContainer idKind = iota + 1
	kindPod
	kindUnit
)

func (k idKind) String() string {
	switch k {
	case kindContainer:
		return "container:id"
	case kindPod:
		return "k8s:pod-uid"
	case kindUnit:
		return "systemd:id"
	}
	return "unknown id"
}

// cgroupSource is where one id was read: the directory Dir (a prefix of
// a line's path, ending with the segment that names the id) of the
// hierarchy Hier ("" for v2, else the v1 line's controller list, as
// "cpu,cpuacct" or "name=systemd").
type cgroupSource struct {
	Kind idKind
	Hier string
	Dir  string
}

var errCgroupFormat = errors.New("malformed cgroup")

// parseCgroup parses the content of /proc/PID/cgroup ("hierarchy:controllers:
// path" lines). It refuses (error) empty input, malformed lines, ".." or
// other non-canonical paths, deleted cgroups and two different container or
// pod ids; it never panics. Container and pod ids are looked for on every
// line; the systemd unit comes from the v2 path, else the v1 name=systemd
// path, else the first v1 path. Ids are taken only where the layouts of
// anchoredIDs put them, never from any segment that looks like one (I15).
func parseCgroup(b []byte) (cgroupInfo, error) {
	var info cgroupInfo
	var v2, v1First, v1Systemd string
	var v1FirstHier, v1SystemdHier string
	var haveV2, haveV1 bool
	lines := 0
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) == 0 {
			continue
		}
		lines++
		hier, rest, ok1 := bytes.Cut(line, []byte{':'})
		ctrl, path, ok2 := bytes.Cut(rest, []byte{':'})
		if !ok1 || !ok2 {
			return info, fmt.Errorf("%w: line %d: want hierarchy:controllers:path", errCgroupFormat, lines)
		}
		if _, ok := parseUint(hier, 31); !ok {
			return info, fmt.Errorf("%w: line %d: bad hierarchy id", errCgroupFormat, lines)
		}
		p := string(path)
		if err := checkCgroupPath(p); err != nil {
			return info, fmt.Errorf("%w: line %d: %w", errCgroupFormat, lines, err)
		}
		switch {
		case string(hier) == "0" && len(ctrl) == 0:
			if haveV2 {
				return info, fmt.Errorf("%w: line %d: second v2 line", errCgroupFormat, lines)
			}
			v2, haveV2 = p, true
		case string(hier) == "0" || len(ctrl) == 0:
			return info, fmt.Errorf("%w: line %d: hierarchy and controllers disagree", errCgroupFormat, lines)
		default:
			if !haveV1 {
				v1First, v1FirstHier, haveV1 = p, string(ctrl), true
			}
			if v1Systemd == "" && hasController(ctrl, "name=systemd") {
				v1Systemd, v1SystemdHier = p, string(ctrl)
			}
		}
		if err := info.addIDs(string(ctrl), p); err != nil {
			return info, fmt.Errorf("%w: line %d: %w", errCgroupFormat, lines, err)
		}
	}
	unitHier, unitPath := "", v2
	switch {
	case haveV2:
		info.Path = v2
	case haveV1:
		info.Path = v1First
		unitHier, unitPath = v1FirstHier, v1First
		if v1Systemd != "" {
			unitHier, unitPath = v1SystemdHier, v1Systemd
		}
	default:
		return info, fmt.Errorf("%w: no cgroup lines", errCgroupFormat)
	}
	if ids := anchoredIDs(unitPath); ids.unit != "" {
		info.SystemdUnit = ids.unit
		info.Sources = append(info.Sources, cgroupSource{Kind: kindUnit, Hier: unitHier, Dir: segDir(unitPath, ids.unitAt)})
	}
	return info, nil
}

// checkCgroupPath accepts "/" and absolute paths without empty, "." or ".."
// segments. The kernel shows ".." for cgroups outside the reader's cgroup
// namespace and " (deleted)" for removed cgroups; both are refused.
func checkCgroupPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New("path is not absolute")
	}
	if strings.HasSuffix(p, " (deleted)") {
		return errors.New("cgroup was deleted")
	}
	if p == "/" {
		return nil
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		switch seg {
		case "":
			return errors.New("empty path segment")
		case ".", "..":
			return fmt.Errorf("%q path segment", seg)
		}
	}
	return nil
}

// hasController reports whether the comma-separated list holds name.
func hasController(list []byte, name string) bool {
	for len(list) > 0 {
		var c []byte
		c, list, _ = bytes.Cut(list, []byte{','})
		if string(c) == name {
			return true
		}
	}
	return false
}

// addIDs records the container and pod ids path names at anchored places,
// with their sources in hierarchy hier ("" for v2), refusing a second,
// different id of either kind.
func (info *cgroupInfo) addIDs(hier, path string) error {
	ids := anchoredIDs(path)
	if err := setOnce(&info.ContainerID, ids.container, "container"); err != nil {
		return err
	}
	if err := setOnce(&info.PodUID, ids.pod, "pod"); err != nil {
		return err
	}
	if ids.container != "" {
		info.Sources = append(info.Sources, cgroupSource{Kind: kindContainer, Hier: hier, Dir: segDir(path, ids.containerAt)})
	}
	if ids.pod != "" {
		info.Sources = append(info.Sources, cgroupSource{Kind: kindPod, Hier: hier, Dir: segDir(path, ids.podAt)})
	}
	return nil
}

// setOnce stores v in *dst unless v is empty; a different value already
// stored is an error.
func setOnce(dst *string, v, kind string) error {
	if v == "" || *dst == v {
		return nil
	}
	if *dst != "" {
		return fmt.Errorf("two %s ids: %s and %s", kind, *dst, v)
	}
	*dst = v
	return nil
}

// lineIDs are the ids one cgroup path names, each with the index of the
// path segment it was read from.
type lineIDs struct {
	container, pod, unit       string
	containerAt, podAt, unitAt int
}

// segDir returns the directory of path down to and including segment at.
func segDir(path string, at int) string {
	end := 0
	for i := 0; i <= at; i++ {
		j := strings.IndexByte(path[end+1:], '/')
		if j < 0 {
			return path
		}
		end += 1 + j
	}
	return path[:end]
}

// anchoredIDs returns the ids a cgroup path (relative to the hierarchy's
// root, as procmesh sees it from the init cgroup namespace) names in the
// layouts that container runtimes, the kubelet and the systemd system
// manager create, and nothing for any other path. These are the only
// layouts recognised (<id> is 64 lowercase hex, <uid> a lowercase UUID,
// <uid_> the same with "_" for "-", <rt> one of docker, cri-containerd,
// crio; "…" below an id is any subtree of it):
//
//	/docker/<id>/…                                      container (docker, cgroupfs driver)
//	/kubepods[/burstable|/besteffort]/pod<uid>[/<c>/…]  pod, container <c> = <id> or <rt>-<id>[.scope] (kubelet, cgroupfs driver)
//	<slices>/<rt>-<id>.scope/…                          container (systemd driver: docker, containerd, CRI-O)
//	/kubepods.slice/kubepods-pod<uid_>.slice/…          pod (kubelet, systemd driver; Guaranteed)
//	/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/…  pod (burstable, besteffort)
//	/system.slice/containerd.service/kubepods[-<qos>]-pod<uid_>.slice:<rt>:<id>/…  pod and container (containerd with the systemd cgroup driver misconfigured)
//	<slices>/<unit>.service, <slices>/<unit>.scope      systemd unit (the process is in the unit's own cgroup)
//
// <slices> is a chain of systemd slices from the root, each named after
// its parent as systemd names them ("", "/system.slice",
// "/system.slice/system-getty.slice", "/user.slice/user-1000.slice"): only
// the system manager makes those, and a unit's subtree (a Delegate=yes
// service, user@UID.service with its user manager's units, a container
// running its own systemd) is never such a chain, so no id is read below
// a unit or container cgroup except the container's own.
func anchoredIDs(path string) lineIDs {
	var ids lineIDs
	if path == "/" {
		return ids
	}
	segs := strings.Split(path[1:], "/")
	switch segs[0] {
	case "docker":
		if len(segs) > 1 && isHex64(segs[1]) {
			ids.container, ids.containerAt = segs[1], 1
		}
		return ids
	case "kubepods":
		i := 1
		if len(segs) > 1 && (segs[1] == "burstable" || segs[1] == "besteffort") {
			i = 2
		}
		if i >= len(segs) {
			return ids
		}
		uid, ok := strings.CutPrefix(segs[i], "pod")
		if !ok || !isUUID(uid) {
			return ids
		}
		ids.pod, ids.podAt = uid, i
		if i+1 < len(segs) {
			if id := podContainer(segs[i+1]); id != "" {
				ids.container, ids.containerAt = id, i+1
			}
		}
		return ids
	}
	n := sliceChain(segs)
	if segs[0] == "kubepods.slice" {
		for i := 1; i < n && i <= 2; i++ {
			if uid := podSliceUID(segs[i]); uid != "" {
				ids.pod, ids.podAt = uid, i
				break
			}
		}
	}
	if n == len(segs) {
		return ids
	}
	seg := segs[n]
	if id := containerScope(seg); id != "" {
		ids.container, ids.containerAt = id, n
		return ids
	}
	if n+1 == len(segs) && (strings.HasSuffix(seg, ".service") || strings.HasSuffix(seg, ".scope")) && isUnitName(seg) {
		ids.unit, ids.unitAt = seg, n
		return ids
	}
	if n == 1 && segs[0] == "system.slice" && seg == "containerd.service" && n+1 < len(segs) {
		// containerd told to use systemd cgroups while runc was not
		// makes "<pod slice>:<runtime>:<id>" one cgroupfs directory
		// below its own service.
		parts := strings.Split(segs[n+1], ":")
		if len(parts) == 3 && isRuntime(parts[1]) && isHex64(parts[2]) {
			if uid := podSliceUID(parts[0]); uid != "" {
				ids.container, ids.containerAt = parts[2], n+1
				ids.pod, ids.podAt = uid, n+1
			}
		}
	}
	return ids
}

// sliceChain returns how many leading segments of segs are systemd slices
// named as systemd nests them: "a.slice", then "a-b.slice", then
// "a-b-c.slice".
func sliceChain(segs []string) int {
	parent := ""
	for n, seg := range segs {
		name, ok := strings.CutSuffix(seg, ".slice")
		if !ok || !isUnitName(seg) {
			return n
		}
		last := name
		if parent != "" {
			if last, ok = strings.CutPrefix(name, parent+"-"); !ok {
				return n
			}
		}
		if last == "" || strings.Contains(last, "-") {
			return n
		}
		parent = name
	}
	return len(segs)
}

// isRuntime reports whether rt is a container runtime prefix of cgroup names.
func isRuntime(rt string) bool {
	return rt == "docker" || rt == "cri-containerd" || rt == "crio"
}

// containerScope returns the id of a "<rt>-<id>.scope" name, or "";
// "crio-conmon-<id>.scope" (the monitor, not the container) is not one.
func containerScope(seg string) string {
	s, ok := strings.CutSuffix(seg, ".scope")
	if !ok {
		return ""
	}
	rt, id, ok := strings.Cut(s, "-")
	if !ok {
		return ""
	}
	if rt == "cri" {
		var ok bool
		if id, ok = strings.CutPrefix(id, "containerd-"); !ok {
			return ""
		}
		rt = "cri-containerd"
	}
	if !isRuntime(rt) || !isHex64(id) {
		return ""
	}
	return id
}

// podContainer returns the container id of a cgroup inside a cgroupfs pod
// cgroup: "<id>", or "<rt>-<id>" with or without ".scope".
func podContainer(seg string) string {
	if isHex64(seg) {
		return seg
	}
	return containerScope(strings.TrimSuffix(seg, ".scope") + ".scope")
}

// podSliceUID returns the pod UID of a kubelet pod slice name,
// "kubepods-pod<uid_>.slice" or "kubepods-<qos>-pod<uid_>.slice", or "".
func podSliceUID(seg string) string {
	s, ok := strings.CutSuffix(seg, ".slice")
	if !ok {
		return ""
	}
	for _, prefix := range []string{"kubepods-pod", "kubepods-burstable-pod", "kubepods-besteffort-pod"} {
		if u, ok := strings.CutPrefix(s, prefix); ok {
			if u = strings.ReplaceAll(u, "_", "-"); isUUID(u) {
				return u
			}
		}
	}
	return ""
}

// cgroupMount is a cgroup hierarchy mounted with its root at Dir.
type cgroupMount struct {
	V2   bool
	Opts []string // super options: a v1 hierarchy's controllers and name=
	Dir  string
}

// parseMountinfo returns the cgroup and cgroup2 mounts of the hierarchies'
// roots in a /proc/PID/mountinfo text (proc(5)); other lines, and lines it
// cannot read, are skipped.
func parseMountinfo(b []byte) []cgroupMount {
	var out []cgroupMount
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+4 || f[3] != "/" {
			continue
		}
		switch f[sep+1] {
		case "cgroup2":
			out = append(out, cgroupMount{V2: true, Dir: unescapeMount(f[4])})
		case "cgroup":
			out = append(out, cgroupMount{Opts: strings.Split(f[sep+3], ","), Dir: unescapeMount(f[4])})
		}
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

// findMount returns where hierarchy hier ("" for v2, else a v1 line's
// controller list) is mounted with its root, or "".
func findMount(mounts []cgroupMount, hier string) string {
	for _, m := range mounts {
		if hier == "" && m.V2 {
			return m.Dir
		}
		if hier == "" || m.V2 {
			continue
		}
		all := true
		for c := range strings.SplitSeq(hier, ",") {
			if !slices.Contains(m.Opts, c) {
				all = false
				break
			}
		}
		if all {
			return m.Dir
		}
	}
	return ""
}

// ownersFunc walks a hierarchy mounted at mount down the directories segs
// and returns the depth of the first directory not owned by root (0 for
// the mount itself, i for the directory segs[:i]) with its owner, or
// len(segs)+1 when root owns them all.
type ownersFunc func(mount string, segs []string) (depth int, uid uint32, err error)

// cgroupTrust checks that cgroup-derived ids come from directories only
// root controls, caching where the hierarchies are mounted. The zero value
// is ready to use.
type cgroupTrust struct {
	mu     sync.Mutex
	mounts []cgroupMount // nil until read, and after a failed walk
}

// mount returns where hier is mounted, reading mountinfo when it was not
// read yet or does not know hier (a hierarchy mounted since).
func (ct *cgroupTrust) mount(hier string, read func() ([]byte, error)) (string, error) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.mounts != nil {
		if dir := findMount(ct.mounts, hier); dir != "" {
			return dir, nil
		}
	}
	b, err := read()
	if err != nil {
		return "", err
	}
	ct.mounts = parseMountinfo(b)
	if ct.mounts == nil {
		ct.mounts = []cgroupMount{}
	}
	if dir := findMount(ct.mounts, hier); dir != "" {
		return dir, nil
	}
	if hier == "" {
		return "", errors.New("no cgroup2 file system is mounted in procmesh's mount namespace (run procmesh with the host's /sys/fs/cgroup)")
	}
	return "", fmt.Errorf("the cgroup v1 hierarchy %q is not mounted in procmesh's mount namespace (run procmesh with the host's /sys/fs/cgroup)", hier)
}

// forget drops the mount table, so the next lookup reads it again.
func (ct *cgroupTrust) forget() {
	ct.mu.Lock()
	ct.mounts = nil
	ct.mu.Unlock()
}

// dropUntrusted removes from info every id read from a directory that is,
// or lies below, a directory not owned by root (a delegated subtree whose
// owner names its cgroups as it likes), and every id whose directories
// could not be checked. read returns the mountinfo text, owners walks a
// hierarchy (cgroup_linux.go has the real ones). It returns what it found
// and dropped, for the log; nil when every id stands.
func (ct *cgroupTrust) dropUntrusted(info *cgroupInfo, read func() ([]byte, error), owners ownersFunc) []error {
	if len(info.Sources) == 0 {
		return nil
	}
	var errs []error
	var drop [kindUnit + 1]bool
	walked := map[string]int{} // hierarchy → depth of its first foreign directory
	for _, src := range info.Sources {
		depth := strings.Count(src.Dir, "/")
		if src.Dir == "/" {
			depth = 0
		}
		mount, err := ct.mount(src.Hier, read)
		if err != nil {
			drop[src.Kind] = true
			errs = append(errs, fmt.Errorf("%s from cgroup %s: cannot check who owns it: %w", src.Kind, src.Dir, err))
			continue
		}
		// The sources of one hierarchy are prefixes of its line's path:
		// walk the deepest once.
		foreign, seen := walked[src.Hier]
		if !seen {
			deepest := src.Dir
			for _, o := range info.Sources {
				if o.Hier == src.Hier && len(o.Dir) > len(deepest) {
					deepest = o.Dir
				}
			}
			segs := strings.Split(strings.TrimPrefix(deepest, "/"), "/")
			var uid uint32
			foreign, uid, err = owners(mount, segs)
			if err != nil {
				ct.forget()
				drop[src.Kind] = true
				errs = append(errs, fmt.Errorf("%s from cgroup %s: cannot check who owns it: %w", src.Kind, src.Dir, err))
				continue
			}
			walked[src.Hier] = foreign
			if foreign <= len(segs) {
				owned := mount + "/" + strings.Join(segs[:foreign], "/")
				errs = append(errs, fmt.Errorf("cgroup %s is owned by uid %d: ids named at or below it are not trusted", strings.TrimSuffix(owned, "/"), uid))
			}
		}
		if depth >= foreign {
			drop[src.Kind] = true
		}
	}
	if drop[kindContainer] {
		errs = append(errs, fmt.Errorf("dropped container:id:%s", info.ContainerID))
		info.ContainerID = ""
	}
	if drop[kindPod] {
		errs = append(errs, fmt.Errorf("dropped k8s:pod-uid:%s", info.PodUID))
		info.PodUID = ""
	}
	if drop[kindUnit] {
		errs = append(errs, fmt.Errorf("dropped systemd:id:%s", info.SystemdUnit))
		info.SystemdUnit = ""
	}
	return errs
}
