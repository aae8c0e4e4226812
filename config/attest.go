package config

import "gopkg.in/yaml.v3"

// Defaults of the attest section.
const (
	DefaultConnectRecord = "auto"
	DefaultForeignWriter = "refuse"
)

// Attest tunes how callers are attested (THREATS I11, I12).
type Attest struct {
	// ConnectRecord: "auto" (default) keeps the kernel's connect-time
	// record where the kernel allows it, "required" refuses to start
	// without it, "off" never loads it.
	ConnectRecord string
	// ForeignWriter: "refuse" (default) refuses bytes on a connection that
	// another process than the connecting one wrote.
	ForeignWriter string
}

func (w *walker) attest(n *yaml.Node, a *Attest) {
	if f, ok := w.mapping(n, "attest", keys("attest")...); ok {
		a.ConnectRecord, _ = w.oneOf(f.get("connect_record"), f.key("connect_record"), []string{"auto", "required", "off"}, nil)
		a.ForeignWriter, _ = w.oneOf(f.get("foreign_writer"), f.key("foreign_writer"), []string{"refuse"}, nil)
	}
	if a.ConnectRecord == "" {
		a.ConnectRecord = DefaultConnectRecord
	}
	if a.ForeignWriter == "" {
		a.ForeignWriter = DefaultForeignWriter
	}
}
