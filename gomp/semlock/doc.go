// Package semlock holds the judgement behind gomp's robust locks: whether the
// process that holds a Lock or RLock still exists.
//
// The locks themselves live in the extension gomp._gomp (pybind/ext/sync.c):
// a word in memory shared between processes, acquired and released with
// atomic operations, slept on and woken with futex(2), all in C because a
// crossing into the Go runtime costs more than an uncontended operation and,
// measured, made every hand-off between processes about 1 us slower. The
// word of a Lock or RLock holds its owner's id (OwnerID); a process that has
// waited longer than one slice asks Alive whether that owner still runs. If
// not, a robust lock (robust=True) is taken over by that waiter; any other
// lock stays held, as with the standard library, and the waiter warns once.
// The C side computes its own id the same way
// (compute_self_id in pybind/ext/sync.c); the two must agree.
package semlock
