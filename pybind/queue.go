package main

/*
#include "gompcore.h"
*/
import "C"

import (
	"errors"
	"time"
	"unsafe"

	"github.com/gomp-dev/gomp/gomp/queue"
)

// qcode maps the queue package's errors to result codes.
func qcode(err error) C.int64_t {
	if errors.Is(err, queue.ErrAgain) {
		return C.GOMP_EAGAIN
	}
	if errors.Is(err, queue.ErrItemLost) {
		return C.GOMP_QLOST
	}
	return code(err)
}

// onQueue is the body of the exports that act on one queue handle: it
// recovers a panic, looks the handle up, runs f with the queue, and returns
// f's value, or the result code of f's error.
func onQueue(h C.int64_t, f func(q *queue.Queue) (C.int64_t, error)) (ret C.int64_t) {
	defer recoverPanic(&ret)
	q, err := queue.Lookup(int64(h))
	if err != nil {
		return qcode(err)
	}
	r, err := f(q)
	if err != nil {
		return qcode(err)
	}
	return r
}

// boolResult is 1 for true, 0 for false.
func boolResult(v bool) C.int64_t {
	if v {
		return 1
	}
	return 0
}

// queueSlice converts slice_ms (< 0: no limit) to a duration (< 0: no limit).
func queueSlice(ms C.int) time.Duration {
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

func putState(st *C.gomp_qput) queue.PutState {
	return queue.PutState{Phase: int64(st.phase), Done: int64(st.done), Locked: int64(st.locked), Frag: int64(st.frag),
		Mode: int64(st.mode), Head: int64(st.head), Since: int64(st.since)}
}

func savePut(st *C.gomp_qput, s queue.PutState) {
	st.phase, st.done, st.locked, st.frag = C.int64_t(s.Phase), C.int64_t(s.Done), C.int64_t(s.Locked), C.int64_t(s.Frag)
	st.head, st.since = C.int64_t(s.Head), C.int64_t(s.Since)
}

func getState(st *C.gomp_qget) queue.GetState {
	return queue.GetState{Locked: int64(st.locked), Mid: int64(st.mid), Total: int64(st.total), Got: int64(st.got),
		Report: int64(st.report), Claim: int64(st.claim)}
}

func saveGet(st *C.gomp_qget, s queue.GetState) {
	st.locked, st.mid, st.total, st.got = C.int64_t(s.Locked), C.int64_t(s.Mid), C.int64_t(s.Total), C.int64_t(s.Got)
}

// gompcore_queue_new creates a queue ring of capacity bytes (maxsize > 0:
// bounded; flags: queue.Flag*), stores its memfd (the caller's) in *fd and
// its readiness eventfd (the handle's: closed with it) in *efd, and returns
// a handle.
//
//export gompcore_queue_new
func gompcore_queue_new(capacity, maxsize, flags C.int64_t, fd, efd *C.int64_t) (ret C.int64_t) {
	defer recoverPanic(&ret)
	h, f, e, err := queue.New(uint64(capacity), int64(maxsize), uint32(flags))
	if err != nil {
		return qcode(err)
	}
	*fd = C.int64_t(f)
	*efd = C.int64_t(e)
	return C.int64_t(h)
}

// gompcore_queue_open attaches the ring in fd with the queue's eventfd efd
// (owned by the handle once this succeeds) and returns a handle.
//
//export gompcore_queue_open
func gompcore_queue_open(fd, efd C.int) (ret C.int64_t) {
	defer recoverPanic(&ret)
	h, err := queue.Open(int(fd), int(efd))
	if err != nil {
		return qcode(err)
	}
	return C.int64_t(h)
}

// gompcore_queue_release forgets a handle.
//
//export gompcore_queue_release
func gompcore_queue_release(h C.int64_t) (ret C.int64_t) {
	defer recoverPanic(&ret)
	return qcode(queue.Release(int64(h)))
}

// gompcore_queue_put puts the n bytes at buf into a Queue: 0 when written
// into the ring, 1 when kept in this process's overflow, GOMP_EAGAIN when a
// bounded put did not complete before the slice ended (its progress in *st;
// see queue.Queue.Put).
//
//export gompcore_queue_put
func gompcore_queue_put(h C.int64_t, buf unsafe.Pointer, n C.int64_t, st *C.gomp_qput, sliceMs C.int) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		s := putState(st)
		over, err := q.Put(cBytes(buf, int64(n)), &s, queueSlice(sliceMs))
		savePut(st, s)
		return boolResult(over), err
	})
}

// gompcore_queue_write puts the n bytes at buf into the ring, waiting for
// room (SimpleQueue): 0, or GOMP_EAGAIN with the progress in *st.
//
//export gompcore_queue_write
func gompcore_queue_write(h C.int64_t, buf unsafe.Pointer, n C.int64_t, st *C.gomp_qput, sliceMs C.int) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		s := putState(st)
		err := q.Write(cBytes(buf, int64(n)), &s, queueSlice(sliceMs))
		savePut(st, s)
		return 0, err
	})
}

// gompcore_queue_put_abort gives up a queue_put or queue_write in progress
// (the producer lock and a bounded put's slot are given back).
//
//export gompcore_queue_put_abort
func gompcore_queue_put_abort(h C.int64_t, st *C.gomp_qput) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		s := putState(st)
		q.AbortPut(&s)
		savePut(st, s)
		return 0, nil
	})
}

// gompcore_queue_get takes the next item into the cap bytes at buf and
// returns its size; a size above cap means that it was left in the queue
// (call again with that much room). GOMP_EAGAIN when the slice ended first.
//
//export gompcore_queue_get
func gompcore_queue_get(h C.int64_t, buf unsafe.Pointer, capacity C.int64_t, st *C.gomp_qget, sliceMs C.int) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		s := getState(st)
		n, err := q.Get(cBytes(buf, int64(capacity)), &s, queueSlice(sliceMs))
		saveGet(st, s)
		return C.int64_t(n), err
	})
}

// gompcore_queue_take_claim returns 1 and stores (job, index) in out[0..1]
// if claim slot slot held a task (clearing it), 0 if not; GOMP_EAGAIN when
// the slice ended before the consumer lock was free (see queue.TakeClaim).
//
//export gompcore_queue_take_claim
func gompcore_queue_take_claim(h, slot C.int64_t, out *C.int64_t, sliceMs C.int) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		held, job, idx, err := q.TakeClaim(int(slot), queueSlice(sliceMs))
		if err != nil || !held {
			return 0, err
		}
		pair := unsafe.Slice(out, 2)
		pair[0], pair[1] = C.int64_t(job), C.int64_t(idx)
		return 1, nil
	})
}

// gompcore_queue_get_abort gives up a queue_get in progress.
//
//export gompcore_queue_get_abort
func gompcore_queue_get_abort(h C.int64_t, st *C.gomp_qget) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		s := getState(st)
		q.AbortGet(&s)
		saveGet(st, s)
		return 0, nil
	})
}

// gompcore_queue_stat returns one of the GOMP_QSTAT_* figures.
//
//export gompcore_queue_stat
func gompcore_queue_stat(h, what C.int64_t) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		r := q.Ring()
		switch what {
		case C.GOMP_QSTAT_QSIZE:
			return C.int64_t(r.Qsize()), nil
		case C.GOMP_QSTAT_EMPTY:
			return boolResult(q.Empty()), nil
		case C.GOMP_QSTAT_FULL:
			return boolResult(r.Full()), nil
		case C.GOMP_QSTAT_PENDING:
			return C.int64_t(q.Pending()), nil
		case C.GOMP_QSTAT_UNFINISHED:
			return C.int64_t(r.Unfinished()), nil
		case C.GOMP_QSTAT_CAPACITY:
			return C.int64_t(r.Capacity()), nil
		case C.GOMP_QSTAT_MAXSIZE:
			return C.int64_t(r.Maxsize()), nil
		case C.GOMP_QSTAT_FLAGS:
			return C.int64_t(r.Flags()), nil
		case C.GOMP_QSTAT_LEVEL:
			q.Level()
			return 0, nil
		}
		return 0, errors.New("queue_stat: unknown figure")
	})
}

// gompcore_queue_flush waits until this process's overflow of h is in the
// ring: 0, or GOMP_EAGAIN at the end of the slice.
//
//export gompcore_queue_flush
func gompcore_queue_flush(h C.int64_t, sliceMs C.int) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		return 0, q.Flush(queueSlice(sliceMs))
	})
}

// gompcore_queue_flush_all waits until the overflow of every queue of this
// process (but those whose join was cancelled) is in its ring.
//
//export gompcore_queue_flush_all
func gompcore_queue_flush_all(sliceMs C.int) (ret C.int64_t) {
	defer recoverPanic(&ret)
	return qcode(queue.FlushAll(queueSlice(sliceMs)))
}

// gompcore_queue_cancel_join makes the exit not wait for h's overflow.
//
//export gompcore_queue_cancel_join
func gompcore_queue_cancel_join(h C.int64_t) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		q.CancelJoin()
		return 0, nil
	})
}

// gompcore_queue_task_done marks a task done: 0, or 1 when there was none.
//
//export gompcore_queue_task_done
func gompcore_queue_task_done(h C.int64_t) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		return boolResult(errors.Is(q.Ring().TaskDone(), queue.ErrTooManyTaskDone)), nil
	})
}

// gompcore_queue_join waits until every task is done: 0, or GOMP_EAGAIN.
//
//export gompcore_queue_join
func gompcore_queue_join(h C.int64_t, sliceMs C.int) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		return 0, q.Ring().Join(queueSlice(sliceMs))
	})
}

// gompcore_queue_watch returns the queue's eventfd (this handle's copy),
// readable while the ring holds a record, and counts the handle as a
// watcher (see gomp/queue/watch.go).
//
//export gompcore_queue_watch
func gompcore_queue_watch(h C.int64_t) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		fd, err := q.Watch()
		return C.int64_t(fd), err
	})
}

// gompcore_queue_unwatch uncounts h as a watcher (the eventfd stays open).
//
//export gompcore_queue_unwatch
func gompcore_queue_unwatch(h C.int64_t) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		q.Unwatch()
		return 0, nil
	})
}

// gompcore_queue_poll waits until the ring holds a record: 1, or
// GOMP_EAGAIN when the slice ended first.
//
//export gompcore_queue_poll
func gompcore_queue_poll(h C.int64_t, sliceMs C.int) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		_, err := q.Poll(queueSlice(sliceMs))
		return 1, err
	})
}

// gompcore_queue_discard gives the queue up in this process: its overflow is
// dropped and the exit does not wait for it.
//
//export gompcore_queue_discard
func gompcore_queue_discard(h C.int64_t) C.int64_t {
	return onQueue(h, func(q *queue.Queue) (C.int64_t, error) {
		q.Discard()
		return 0, nil
	})
}
