/* Functions of the core for the queues (gomp/queue). */
#ifndef GOMPCORE_QUEUE_H
#define GOMPCORE_QUEUE_H
#define GOMPCORE_QUEUE_FUNCS(X)
#endif
