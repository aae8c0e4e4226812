package credread

import (
	"os"
	"strconv"
)

// WriterError is implemented by the errors that refuse bytes written on a
// connection by another process than the one that connected (THREATS
// I12): proxy's and the Workload API's, so that one classification
// (proxy.RefusalKind, the metrics) knows both.
type WriterError interface {
	error
	// WrittenBy is the process that wrote and the one that connected.
	WrittenBy() (writer, connector int32)
}

// WriterExe is the executable of process pid, read now, best effort ("" if
// it cannot be read or pid is 0): for naming a writer in a refusal.
func WriterExe(pid int32) string {
	if pid <= 0 {
		return ""
	}
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(int(pid)) + "/exe")
	return exe
}

// DescribeWriter names the process pid (running exe) that wrote on a
// connection, for a refusal; pid 0 (SCM_CREDENTIALS from another PID
// namespace) is a process procmesh cannot see.
func DescribeWriter(pid int32, exe string) string {
	switch {
	case pid == 0:
		return "a process procmesh cannot see (another PID namespace)"
	case exe != "":
		return "process " + strconv.Itoa(int(pid)) + " (" + exe + ")"
	}
	return "process " + strconv.Itoa(int(pid))
}
