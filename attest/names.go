package attest

import (
	"os/user"
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// nameTTL bounds how long a uid/gid → name answer (or its absence) is
// reused, so renamed or newly created accounts are seen within a minute.
const nameTTL = time.Minute

type nameKey struct {
	group bool
	id    uint32
}

type nameEntry struct {
	name string // "" when the lookup failed
	at   time.Time
}

// nameCache resolves uids and gids to names through os/user, caching
// answers (failures too) in a bounded LRU. A failed lookup yields "": the
// process simply gets no unix:user / unix:group selector.
type nameCache struct {
	cache       *lru.Cache[nameKey, nameEntry]
	now         func() time.Time
	lookupUser  func(uid string) (*user.User, error)
	lookupGroup func(gid string) (*user.Group, error)
}

func newNameCache(size int) *nameCache {
	// lru.New fails only for a size below 1; callers pass a constant.
	c, _ := lru.New[nameKey, nameEntry](size)
	return &nameCache{
		cache:       c,
		now:         time.Now,
		lookupUser:  user.LookupId,
		lookupGroup: user.LookupGroupId,
	}
}

// user returns the name of uid, "" when unknown.
func (n *nameCache) user(uid uint32) string {
	return n.get(nameKey{id: uid}, func(id string) (string, error) {
		u, err := n.lookupUser(id)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

// group returns the name of gid, "" when unknown.
func (n *nameCache) group(gid uint32) string {
	return n.get(nameKey{group: true, id: gid}, func(id string) (string, error) {
		g, err := n.lookupGroup(id)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func (n *nameCache) get(k nameKey, lookup func(string) (string, error)) string {
	now := n.now()
	if e, ok := n.cache.Get(k); ok && now.Sub(e.at) < nameTTL {
		return e.name
	}
	name, err := lookup(strconv.FormatUint(uint64(k.id), 10))
	if err != nil {
		name = ""
	}
	n.cache.Add(k, nameEntry{name: name, at: now})
	return name
}
