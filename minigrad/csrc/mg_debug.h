/* MINIGRAD_DEBUG: 1 in the MINIGRAD_CYTHON_DEBUG=1 build (setup.py defines it), else 0 */
#ifndef MINIGRAD_DEBUG
#define MINIGRAD_DEBUG 0
#endif
