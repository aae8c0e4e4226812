package main

import (
	"net"
	"os"
	"strconv"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// reloadingState is the notification that a reload (SIGHUP) starts:
// RELOADING=1 with the CLOCK_MONOTONIC time in µs, as sd_notify(3) asks;
// READY=1 ends it.
func reloadingState() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// notifySystemd sends state ("READY=1", "RELOADING=1...", "STOPPING=1") to systemd's
// notification socket when procmesh runs as a Type=notify unit
// (sd_notify(3)): a datagram to $NOTIFY_SOCKET, a path or, with a leading
// '@', an abstract socket. Without NOTIFY_SOCKET it does nothing.
func notifySystemd(state string, log zerolog.Logger) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Warn().Err(err).Str("notify_socket", os.Getenv("NOTIFY_SOCKET")).Msg("systemd notification socket unreachable")
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		log.Warn().Err(err).Str("state", state).Msg("systemd notification not sent")
	}
}
