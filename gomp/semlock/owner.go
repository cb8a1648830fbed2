package semlock

import (
	"bytes"
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// An owner id names the process that holds a mutex, in 31 bits: the pid in
// bits 0..21 (Linux pids are below PID_MAX_LIMIT = 2^22) and, in bits 22..30,
// the low 9 bits of the process's start time (field 22 of /proc/PID/stat, in
// clock ticks since boot). The tag tells a recycled pid from the owner: a new
// process with the owner's pid has the same tag only if it started a multiple
// of 512 ticks (5.12 s at 100 Hz) after it, so a waiter is misled by pid reuse
// with probability 1/512 at most, and then only waits like the stdlib does.
//
// The C side computes its own id the same way (compute_self_id in
// pybind/ext/sync.c); the two must agree.
const (
	pidBits = 22
	pidMask = 1<<pidBits - 1
	tagBits = 9
	tagMask = 1<<tagBits - 1

	// NoOwner is the id of a mutex held by a process whose identity cannot
	// be checked (it runs in another pid namespace than the one the lock was
	// made in, or it cannot read /proc): such an owner is never declared dead.
	NoOwner = tagMask << pidBits
)

// OwnerID is the id of the process pid that started at starttime (clock
// ticks since boot).
func OwnerID(pid int, starttime uint64) uint32 {
	if pid <= 0 || pid > pidMask {
		return NoOwner
	}
	return uint32(pid) | uint32(starttime&tagMask)<<pidBits
}

// Alive reports whether the owner id may still be running. It answers false
// only when it is sure: /proc shows a zombie or a process with another start
// time (the pid was reused), or, when /proc/PID/stat cannot be read, kill(pid,
// 0) says that no such process exists (ESRCH; EPERM means it exists, for
// example under another user with /proc mounted hidepid).
func Alive(id uint32) bool {
	pid := int(id & pidMask)
	if pid == 0 {
		return true // NoOwner
	}
	st, err := readStat(pid)
	if err != nil {
		return unix.Kill(pid, 0) != unix.ESRCH
	}
	if st.state == 'Z' || st.state == 'X' || st.state == 'x' {
		return false
	}
	return uint32(st.starttime&tagMask) == (id>>pidBits)&tagMask
}

type procStat struct {
	state     byte
	starttime uint64
}

// readStat reads the state and start time of pid from /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

var errBadStat = errors.New("semlock: malformed /proc/PID/stat")

// parseStat extracts fields 3 (state) and 22 (starttime) of a stat line. The
// command name (field 2) is in parentheses and may itself contain spaces and
// parentheses, so the fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errBadStat
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errBadStat
	}
	t, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return procStat{}, errBadStat
	}
	return procStat{state: f[0][0], starttime: t}, nil
}
