package attest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// cgroupInfo is what procmesh derives from /proc/PID/cgroup.
type cgroupInfo struct {
	Path        string // the v2 path, else the first v1 path
	ContainerID string // 64 lowercase hex, "" when none
	PodUID      string // Kubernetes pod UID with dashes, "" when none
	SystemdUnit string // "" when none
}

var errCgroupFormat = errors.New("malformed cgroup")

// parseCgroup parses the content of /proc/PID/cgroup ("hierarchy:controllers:
// path" lines). It refuses (error) empty input, malformed lines, ".." or
// other non-canonical paths, deleted cgroups and two different container or
// pod ids; it never panics. Container and pod ids are looked for on every
// line; the systemd unit comes from the v2 path, else the v1 name=systemd
// path, else the first v1 path.
func parseCgroup(b []byte) (cgroupInfo, error) {
	var info cgroupInfo
	var v2, v1First, v1Systemd string
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
				v1First, haveV1 = p, true
			}
			if v1Systemd == "" && hasController(ctrl, "name=systemd") {
				v1Systemd = p
			}
		}
		if err := info.addIDs(p); err != nil {
			return info, fmt.Errorf("%w: line %d: %w", errCgroupFormat, lines, err)
		}
	}
	switch {
	case haveV2:
		info.Path = v2
		info.SystemdUnit = systemdUnit(v2)
	case haveV1:
		info.Path = v1First
		unitPath := v1Systemd
		if unitPath == "" {
			unitPath = v1First
		}
		info.SystemdUnit = systemdUnit(unitPath)
	default:
		return info, fmt.Errorf("%w: no cgroup lines", errCgroupFormat)
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

// addIDs records the container and pod ids named by path's segments,
// refusing a second, different id of either kind.
func (info *cgroupInfo) addIDs(path string) error {
	prev := ""
	for seg := range strings.SplitSeq(strings.TrimPrefix(path, "/"), "/") {
		slice, cid := seg, containerID(prev, seg)
		if parts := strings.Split(seg, ":"); len(parts) == 3 {
			// containerd with the systemd driver: "<pod slice>:<runtime>:<id>".
			slice = parts[0]
		}
		if err := setOnce(&info.ContainerID, cid, "container"); err != nil {
			return err
		}
		if err := setOnce(&info.PodUID, podUID(slice), "pod"); err != nil {
			return err
		}
		prev = seg
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

// containerID returns the container id a cgroup path segment names, or "".
func containerID(prev, seg string) string {
	if parts := strings.Split(seg, ":"); len(parts) == 3 {
		switch parts[1] {
		case "cri-containerd", "docker", "crio":
			if isHex64(parts[2]) {
				return parts[2]
			}
		}
		return ""
	}
	if isHex64(seg) && (prev == "docker" || podUID(prev) != "") {
		return seg
	}
	// Runtimes whose "<prefix><64hex>[.scope]" cgroup names carry an id;
	// "crio-conmon-<id>" (the monitor, not the container) does not match.
	s := strings.TrimSuffix(seg, ".scope")
	for _, prefix := range []string{"docker-", "cri-containerd-", "crio-"} {
		if id, ok := strings.CutPrefix(s, prefix); ok && isHex64(id) {
			return id
		}
	}
	return ""
}

// podUID returns the pod UID a cgroup path segment names ("pod<uid>" with
// the cgroupfs driver, "kubepods-<qos>-pod<uid_with_underscores>.slice" with
// the systemd driver), or "".
func podUID(seg string) string {
	s := strings.TrimSuffix(seg, ".slice")
	var candidate string
	if rest, ok := strings.CutPrefix(s, "pod"); ok {
		candidate = rest
	} else if i := strings.LastIndex(s, "-pod"); i >= 0 && strings.HasPrefix(s, "kubepods-") {
		candidate = s[i+len("-pod"):]
	} else {
		return ""
	}
	candidate = strings.ReplaceAll(candidate, "_", "-")
	if !isUUID(candidate) {
		return ""
	}
	return candidate
}

// systemdUnit returns the last element of path when it is a ".service" or a
// non-container ".scope" with a valid unit name, else "".
func systemdUnit(path string) string {
	last := path[strings.LastIndexByte(path, '/')+1:]
	if !strings.HasSuffix(last, ".service") && !strings.HasSuffix(last, ".scope") {
		return ""
	}
	if containerID("", last) != "" || !isUnitName(last) {
		return ""
	}
	return last
}
