/* Functions of the core for the synchronization primitives (gomp/sync). */
#ifndef GOMPCORE_SYNC_H
#define GOMPCORE_SYNC_H
#define GOMPCORE_SYNC_FUNCS(X)
#endif
