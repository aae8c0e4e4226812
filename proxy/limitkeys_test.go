package proxy

import (
	"os"
	"strings"
	"testing"
)

// TestLimitKeysExist: every key a refusal tells the operator to change is a
// key of the config file. configs/example.yaml holds every key and no
// other (the config package's tests keep it so), so each key must stand
// in its section there.
func TestLimitKeysExist(t *testing.T) {
	example, err := os.ReadFile("../configs/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		keyRequestHeaderBytes, keyRequestHeaders, keyResponseHeaders, keyResponseHeaderBytes,
		keyRequestTimeout, keyStreamIdleTimeout, keyMaxConnections, keyMaxConnectionsPerID,
		keyRequestBodyBytes,
	} {
		section, leaf, _ := strings.Cut(key, ".")
		body, ok := sectionOf(string(example), section)
		if !ok || !strings.Contains(body, "\n  "+leaf+":") {
			t.Errorf("refusals name %s, which configs/example.yaml does not have", key)
		}
	}
}

// sectionOf returns the indented lines under a top-level key.
func sectionOf(yaml, section string) (string, bool) {
	_, rest, ok := strings.Cut(yaml, "\n"+section+":\n")
	if !ok {
		return "", false
	}
	end := len(rest)
	for i := 0; i < len(rest); {
		j := strings.IndexByte(rest[i:], '\n')
		if j < 0 {
			break
		}
		line := rest[i : i+j]
		if line != "" && line[0] != ' ' && line[0] != '#' {
			end = i
			break
		}
		i += j + 1
	}
	return "\n" + rest[:end], true
}
