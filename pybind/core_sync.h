/* Functions of the core for the synchronization primitives (gomp/owner,
 * bound in pybind/sync.go, used by pybind/ext/sync.c). */
#ifndef GOMPCORE_SYNC_H
#define GOMPCORE_SYNC_H
/* clang-format off */
#define GOMPCORE_SYNC_FUNCS(X)                                                   \
    X(int64_t, owner_alive, (uint32_t id))
/* clang-format on */
#endif
