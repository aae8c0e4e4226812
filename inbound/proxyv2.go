package inbound

import (
	"encoding/binary"
	"errors"
	"net"
)

// TLVSPIFFEID is the PROXY v2 TLV type that carries the caller's SPIFFE ID,
// as ztunnel writes it (PROXY_PROTOCOL_AUTHORITY_TLV).
const TLVSPIFFEID = 0xD0

var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ProxyV2Header returns a PROXY protocol v2 header (command PROXY, TCP over
// IPv4 or IPv6) for a connection from src to dst, with one TLV 0xD0
// holding spiffeID.
func ProxyV2Header(src, dst net.Addr, spiffeID string) ([]byte, error) {
	s, ok1 := src.(*net.TCPAddr)
	d, ok2 := dst.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return nil, errors.New("inbound: PROXY v2 needs TCP addresses")
	}
	if len(spiffeID) > 0xffff-64 {
		return nil, errors.New("inbound: SPIFFE ID too long for a PROXY v2 TLV")
	}
	var fam byte
	var addrs []byte
	s4, d4 := s.IP.To4(), d.IP.To4()
	if s4 != nil && d4 != nil {
		fam = 0x11 // AF_INET, STREAM
		addrs = append(append(addrs, s4...), d4...)
	} else {
		fam = 0x21 // AF_INET6, STREAM
		addrs = append(append(addrs, s.IP.To16()...), d.IP.To16()...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, uint16(s.Port))
	addrs = binary.BigEndian.AppendUint16(addrs, uint16(d.Port))
	tlv := []byte{TLVSPIFFEID}
	tlv = binary.BigEndian.AppendUint16(tlv, uint16(len(spiffeID)))
	tlv = append(tlv, spiffeID...)
	out := append([]byte(nil), proxyV2Sig...)
	out = append(out, 0x21, fam) // version 2, command PROXY
	out = binary.BigEndian.AppendUint16(out, uint16(len(addrs)+len(tlv)))
	out = append(out, addrs...)
	return append(out, tlv...), nil
}
