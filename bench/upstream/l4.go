package upstream

import (
	"encoding/binary"
	"net"
)

// L4Proto is the bulk-transfer protocol of the L4 sink. The client writes
// bytes; every time the running total crosses a multiple of L4AckEvery the
// sink writes the total so far as a big-endian uint64. A client that writes
// only whole multiples of L4AckEvery therefore learns when the last of its
// bytes arrived, through any proxy, without half-closing.
const (
	L4AckEvery = 1 << 20
	l4ReadBuf  = 64 << 10
)

// serveL4 counts and acknowledges what the client sends until it closes.
func serveL4(c net.Conn) {
	defer c.Close()
	buf := make([]byte, l4ReadBuf)
	var total, next uint64 = 0, L4AckEvery
	var ack [8]byte
	for {
		n, err := c.Read(buf)
		total += uint64(n)
		if total >= next {
			next = (total/L4AckEvery + 1) * L4AckEvery
			binary.BigEndian.PutUint64(ack[:], total)
			if _, werr := c.Write(ack[:]); werr != nil {
				return
			}
		}
		if err != nil { // io.EOF included: the client is done
			return
		}
	}
}
