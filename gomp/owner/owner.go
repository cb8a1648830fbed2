// Package owner names the process that holds a lock shared between
// processes, and tells whether that process is still alive.
//
// It is the one owner-identity scheme of gomp. Its users:
//   - the locks of the extension (pybind/ext/sync.c): the word of a Lock or
//     RLock holds its owner's id; a waiter that has waited longer than one
//     slice asks the core (Alive, through pybind/sync.go) whether the owner
//     still runs. If not, a robust lock (robust=True) is taken over by that
//     waiter; any other lock stays held, as with the standard library, and
//     the waiter warns once. The C side computes its own
//     id from /proc/self/stat (owner_id_from_stat in sync.c) without the Go
//     runtime, because its fast path needs it before any wait;
//   - the locks of the queue rings (gomp/queue/lock.go): the owner's id is
//     kept in the tag word next to each lock word.
//
// The format and the parser are specified in ARCHITECTURE.md ("Owner ids");
// testdata/stat_vectors.txt is a shared test vector that the Go test here
// and the C test (tests_py/test_owner_id.py, through the extension) both run,
// so the two parsers cannot drift apart.
package owner

import (
	"bytes"
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// An owner id names a process in 31 bits: the pid in bits 0..21 (Linux pids
// are below PID_MAX_LIMIT = 2^22) and, in bits 22..30, the low 9 bits of the
// process's start time (field 22 of /proc/PID/stat, in clock ticks since
// boot). The tag tells a recycled pid from the owner: a new process with the
// owner's pid has the same tag only if it started a multiple of 512 ticks
// (5.12 s at 100 Hz) after it, so a waiter is misled by pid reuse with
// probability 1/512 at most, and then only waits like the stdlib does.
const (
	PidBits = 22
	PidMask = 1<<PidBits - 1
	tagBits = 9
	tagMask = 1<<tagBits - 1

	// NoOwner is the id of a process whose identity cannot be checked (it
	// runs in another pid namespace than the one the lock was made in, or it
	// cannot read /proc): such an owner is never declared dead.
	NoOwner = tagMask << PidBits
)

// ID is the id of the process pid that started at starttime (clock ticks
// since boot); NoOwner for a pid out of range.
func ID(pid int, starttime uint64) uint32 {
	if pid <= 0 || pid > PidMask {
		return NoOwner
	}
	return uint32(pid) | uint32(starttime&tagMask)<<PidBits
}

// FromStat is the id of process pid given the contents of its
// /proc/PID/stat; NoOwner when the contents cannot be parsed. The C side's
// owner_id_from_stat (pybind/ext/sync.c) computes the same.
func FromStat(pid int, stat []byte) uint32 {
	st, err := ParseStat(stat)
	if err != nil {
		return NoOwner
	}
	return ID(pid, st.StartTime)
}

// Self is the id of the calling process (NoOwner if /proc cannot tell).
func Self() uint32 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return NoOwner
	}
	return FromStat(os.Getpid(), b)
}

// Alive reports whether the owner id may still be running. It answers false
// only when it is sure: /proc shows a zombie or a process with another start
// time (the pid was reused), or, when /proc/PID/stat cannot be read, kill(pid,
// 0) says that no such process exists (ESRCH; EPERM means it exists, for
// example under another user with /proc mounted hidepid).
func Alive(id uint32) bool {
	pid := int(id & PidMask)
	if pid == 0 {
		return true // NoOwner
	}
	st, err := ReadStat(pid)
	if err != nil {
		return unix.Kill(pid, 0) != unix.ESRCH
	}
	if st.Dead() {
		return false
	}
	return uint32(st.StartTime&tagMask) == (id>>PidBits)&tagMask
}

// PidAlive reports whether process pid may still be running, when only its
// pid is known: false only for no such process or a zombie.
func PidAlive(pid int) bool {
	if pid <= 0 {
		return true
	}
	st, err := ReadStat(pid)
	if err != nil {
		return unix.Kill(pid, 0) != unix.ESRCH
	}
	return !st.Dead()
}

// Stat holds the fields of /proc/PID/stat that owner ids need.
type Stat struct {
	State     byte   // field 3: R, S, D, Z, X, ...
	StartTime uint64 // field 22: clock ticks since boot
}

// Dead reports a zombie or a process being torn down.
func (s Stat) Dead() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// ReadStat reads the state and start time of pid from /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(b)
}

var errBadStat = errors.New("owner: malformed /proc/PID/stat")

// ParseStat extracts fields 3 (state) and 22 (starttime) of a stat line. The
// command name (field 2) is in parentheses and may itself contain spaces and
// parentheses, so the fields are counted from the last ')'. The start time
// must be a decimal number ending at a space or the end of the line.
func ParseStat(b []byte) (Stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, errBadStat
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, errBadStat
	}
	t, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return Stat{}, errBadStat
	}
	return Stat{State: f[0][0], StartTime: t}, nil
}
