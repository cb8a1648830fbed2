/* Functions of the core for the synchronization primitives (gomp/semlock,
 * bound in pybind/sync.go, used by pybind/ext/sync.c). */
#ifndef GOMPCORE_SYNC_H
#define GOMPCORE_SYNC_H
#define GOMPCORE_SYNC_FUNCS(X)                                                   \
    X(int64_t, sem_wait, (uint64_t *word, int64_t slice_us))                     \
    X(int64_t, sem_wake, (uint64_t *word, int n))                                \
    X(int64_t, mutex_wait, (uint32_t *word, uint32_t id, int check_owner,        \
                            int64_t slice_us))                                   \
    X(int64_t, mutex_wake, (uint32_t *word))                                     \
    X(int64_t, owner_alive, (uint32_t id))
#endif
