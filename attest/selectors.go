package attest

import (
	"slices"
	"strconv"
)

// Selector types, as in the contract: a selector is "<type>:<value>".
const (
	selUID              = "unix:uid"
	selUser             = "unix:user"
	selGID              = "unix:gid"
	selGroup            = "unix:group"
	selSupplementaryGID = "unix:supplementary_gid"
	selPath             = "unix:path"
	selSHA256           = "unix:sha256"
	selContainerID      = "container:id"
	selPodUID           = "k8s:pod-uid"
	selSystemdID        = "systemd:id"
)

// selectors returns the sorted, deduplicated selectors of p. Unknown values
// ("" names, no hash, no container) give no selector, and neither does a
// path that names another file in procmesh's mount namespace
// (ExePathForeign).
func selectors(p *Process) []string {
	s := make([]string, 0, 8+len(p.SupplementaryGIDs))
	add := func(typ, value string) {
		if value != "" {
			s = append(s, typ+":"+value)
		}
	}
	add(selUID, strconv.FormatUint(uint64(p.UID), 10))
	add(selGID, strconv.FormatUint(uint64(p.GID), 10))
	add(selUser, p.User)
	add(selGroup, p.Group)
	for _, g := range p.SupplementaryGIDs {
		add(selSupplementaryGID, strconv.FormatUint(uint64(g), 10))
	}
	if !p.ExePathForeign {
		add(selPath, p.ExePath)
	}
	add(selSHA256, p.ExeSHA256)
	add(selContainerID, p.ContainerID)
	add(selPodUID, p.PodUID)
	add(selSystemdID, p.SystemdUnit)
	slices.Sort(s)
	return slices.Compact(s)
}
