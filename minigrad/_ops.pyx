# cython: language_level=3, cdivision=True
"""Compiled recurrent cell kernels: RNN, LSTM and GRU, one step (cell) and whole sequences, forward
and backward (contract: docs/kernels.md; NumPy twin with the same names: _ops_ref.py).

Layout of this file:
  1. the arguments of a body: `Args` (untyped, filled by the checks) and its typed views `CellF`
     (float32) and `CellD` (float64); `_run`, the one float32/float64 dispatch
  2. helpers the three families share (bias sums, padded rows, the deferred weight gradients)
     and the argument checks
  3. one section per family, in the twin's order (RNN, LSTM, GRU): the nogil bodies (a cell is
     the sequence body with T = 1), which call the row kernels (C, in csrc/mg_cells.h and, for
     layer norm, csrc/mg_norm.h) through their entry point for both dtypes, and the wrappers

The bodies are fused over `Cell` (CellF or CellD): their pointer locals take the element type of
the struct field they are set from (Cython infers it), and the GEMM (_gemm.pxd) and array helpers
(_arrays.pxd) they call are inline functions specialized for it.
"""
from libc.string cimport memcpy, memset
from cython cimport floating
from libc.stdint cimport int64_t
cimport numpy as cnp
import numpy as np

from minigrad._arrays cimport (_typed, _copy, _zero, _add, _add_rows, _colsum, _alpha, _scale,
                              _scaled_copy)
from minigrad._checks cimport (INT_MAX, _anchor, _check, _empty, _cache_empty, _verify, _borrow,
                               _give_back, _data, _grads_out)
from minigrad._gemm cimport (SMALL_GEMM, gemm, gemm_p, pgemm, _pack, _packed_len, mg_packed_lenf,
                             mg_packed_lend)
from minigrad._pool cimport _parts, _parallel

cnp.import_array()


cdef extern from "csrc/mg_cells.h" nogil:
    # the row kernels; dbl: the double version (else float)
    void mg_rnn_act(bint dbl, void* p, int relu, Py_ssize_t n)
    void mg_rnn_bwd_row(bint dbl, void* dh, void* y, void* da, int relu, Py_ssize_t H)
    void mg_lstm_fwd_row(bint dbl, void* g, void* bias, void* cp, void* ct, void* ht, Py_ssize_t H)
    void mg_lstm_bwd_row(bint dbl, void* g, void* dh, void* dc, void* cp, void* dg, void* dcp,
                         Py_ssize_t H)
    void mg_gru_fwd_row(bint dbl, void* g, void* gh, void* bias, void* hp, void* ht, Py_ssize_t H)
    void mg_gru_bwd_row(bint dbl, void* g, void* dh, void* hp, void* dgi, void* dghn, void* dhp,
                        Py_ssize_t H)


cdef extern from "csrc/mg_norm.h" nogil:
    # layer norm around the LSTM and GRU rows; dbl: the double version (else float)
    void mg_lstm_ln_pre(bint dbl, void* g, void* bias, void* zero, void* gain, void* shift,
                        void* xh, Py_ssize_t H)
    void mg_lstm_ln_post(bint dbl, void* g, void* ct, void* ht, void* zero, void* gain,
                         void* shift, void* xh, Py_ssize_t H)
    void mg_lstm_ln_bwd_pre(bint dbl, void* g, void* dh, void* dc, void* gain, void* xh,
                            void* dcx, void* dy, void* acc, Py_ssize_t H)
    void mg_lstm_ln_bwd_post(bint dbl, void* dg, void* dy, void* acc, void* gain, void* xh,
                             Py_ssize_t H)
    void mg_gru_ln_pre(bint dbl, void* g, void* gh, void* bias, void* zero, void* gain,
                       void* shift, void* xh, Py_ssize_t H)
    void mg_gru_ln_bwd_post(bint dbl, void* dgi, void* dghn, void* dy, void* acc, void* gain,
                            void* xh, Py_ssize_t H)
    void mg_ln_grads(bint dbl, void* acc, Py_ssize_t rows, Py_ssize_t n, Py_ssize_t ldacc,
                     void* dgain, void* dshift)


cdef extern from "csrc/mg_dropout.h" nogil:
    void mg_mask_mulf(float* out, float* a, float* m, Py_ssize_t n)
    void mg_mask_muld(double* out, double* a, double* m, Py_ssize_t n)
    void mg_mask_fmaf(float* out, float* a, float* m, Py_ssize_t n)
    void mg_mask_fmad(double* out, double* a, double* m, Py_ssize_t n)
    void mg_zone_fwdf(float* h, float* hp, float* z, Py_ssize_t n)
    void mg_zone_fwdd(double* h, double* hp, double* z, Py_ssize_t n)
    void mg_zone_bwdf(float* out, float* d, float* z, Py_ssize_t n)
    void mg_zone_bwdd(double* out, double* d, double* z, Py_ssize_t n)


# ---------------------------------------------------------------------------------------------
# 1. arguments and dispatch


cdef struct Dims:             # the sizes, shared by Args and its typed views
    int T, B, nI, H           # nI: complex.h defines a macro I
    int relu                  # RNN: relu (1) or tanh (0)
    int64_t *lengths          # (B,), NULL: every step real
    int b0, b1                # the batch rows this call's time loop runs, [b0, b1) (_drive)
    bint pre, post            # this call runs the body's shared first / last part (_drive)
    double s_ih, s_hh         # the factors of dW_ih, dW_hh, db_ih, db_hh: 1, or the backward's
    double sb_ih, sb_hh       # scale for a gradient written into its out array (_param_grads)


cdef struct Args:
    Dims d
    void *x
    void *h0
    void *c0
    void *w_ih                # NULL: x is the input projection (a cell step)
    void *w_hh
    void *b_ih                # NULL: no bias (or, with w_ih NULL, b_ih is in x)
    void *b_hh
    # forward outputs
    void *hs                  # (T, B, H): state after each step (a sequence passes hs[1:])
    void *cs                  # (T, B, H): LSTM cell state after each step
    void *gates               # (T, B, L): per-step cell cache (RNN: h~ under zoneout, L = H)
    void *ys                  # (T, B, H) or NULL (cells, and sequences without lengths)
    void *ws                  # workspace
    void *pw                  # W_hh packed for the per-step GEMMs (_packed_w), or NULL
    # backward inputs (also x, w_ih, w_hh, hs, gates, lengths)
    void *dys                 # (T, B, H), or NULL (cells; sequences given dys=None)
    void *dh_n
    void *dc_n
    void *hprev               # (T, B, H): state before each step (hs[:T], or h for a cell)
    void *cprev
    # backward outputs
    void *dx                  # NULL: skip the dx GEMM (need_dx=False)
    void *dh0                 # NULL: skip the last step's GEMM (need_dh0=False)
    void *dc0
    void *dw_ih
    void *dw_hh
    void *db_ih               # NULL: no bias
    void *db_hh
    # recurrent dropout and zoneout, each NULL when off (section 2b)
    void *drop_h              # (B, H): the mask on the state entering the per-step GEMM
    void *zone_h              # (T, B, H): zoneout's weight of the previous h
    void *zone_c              # (T, B, H): the same for the LSTM's c
    void *hdrop               # workspace with drop_h: (B, H) forward, (T, B, H) backward
    void *zbuf                # workspace with zone_h: (2, B, H), zoneout's backward
    # layer norm (LSTM, GRU; every one NULL when it is off; csrc/mg_norm.h)
    void *ln_w                # (nb*H,) the norms' gains (LSTM nb = 5: i, f, g, o, c;
    void *ln_b                # GRU nb = 4: r, z, n's input part, n's recurrent part), shifts
    void *lnc                 # (T, B, nb*H + nb): xhat of each norm, then 1/std of each
    void *lnw                 # forward: zeros (4H); LSTM backward: (B, H) scratch
    void *lnrows              # backward: (B, 3 nb*H), per batch row [the gradients w.r.t. the
                              # norms' outputs at the current step | the gain and shift
                              # gradients summed over the steps so far (nb*H each)]
    void *dln_w
    void *dln_b


# The same fields, typed: what the bodies read.
cdef struct CellF:
    Dims d
    float *x
    float *h0
    float *c0
    float *w_ih
    float *w_hh
    float *b_ih
    float *b_hh
    float *hs
    float *cs
    float *gates
    float *ys
    float *ws
    float *pw
    float *dys
    float *dh_n
    float *dc_n
    float *hprev
    float *cprev
    float *dx
    float *dh0
    float *dc0
    float *dw_ih
    float *dw_hh
    float *db_ih
    float *db_hh
    float *drop_h
    float *zone_h
    float *zone_c
    float *hdrop
    float *zbuf
    float *ln_w
    float *ln_b
    float *lnc
    float *lnw
    float *lnrows
    float *dln_w
    float *dln_b


cdef struct CellD:
    Dims d
    double *x
    double *h0
    double *c0
    double *w_ih
    double *w_hh
    double *b_ih
    double *b_hh
    double *hs
    double *cs
    double *gates
    double *ys
    double *ws
    double *pw
    double *dys
    double *dh_n
    double *dc_n
    double *hprev
    double *cprev
    double *dx
    double *dh0
    double *dc0
    double *dw_ih
    double *dw_hh
    double *db_ih
    double *db_hh
    double *drop_h
    double *zone_h
    double *zone_c
    double *hdrop
    double *zbuf
    double *ln_w
    double *ln_b
    double *lnc
    double *lnw
    double *lnrows
    double *dln_w
    double *dln_b


ctypedef fused Cell:
    CellF
    CellD


ctypedef void (*BodyF)(CellF*) noexcept nogil
ctypedef void (*BodyD)(CellD*) noexcept nogil


cdef void _view(Args* a, Cell* k) noexcept:
    """Fill the typed view k of a."""
    k.d = a.d
    _typed(&k.x, a.x)
    _typed(&k.h0, a.h0)
    _typed(&k.c0, a.c0)
    _typed(&k.w_ih, a.w_ih)
    _typed(&k.w_hh, a.w_hh)
    _typed(&k.b_ih, a.b_ih)
    _typed(&k.b_hh, a.b_hh)
    _typed(&k.hs, a.hs)
    _typed(&k.cs, a.cs)
    _typed(&k.gates, a.gates)
    _typed(&k.ys, a.ys)
    _typed(&k.ws, a.ws)
    _typed(&k.pw, a.pw)
    _typed(&k.dys, a.dys)
    _typed(&k.dh_n, a.dh_n)
    _typed(&k.dc_n, a.dc_n)
    _typed(&k.hprev, a.hprev)
    _typed(&k.cprev, a.cprev)
    _typed(&k.dx, a.dx)
    _typed(&k.dh0, a.dh0)
    _typed(&k.dc0, a.dc0)
    _typed(&k.dw_ih, a.dw_ih)
    _typed(&k.dw_hh, a.dw_hh)
    _typed(&k.db_ih, a.db_ih)
    _typed(&k.db_hh, a.db_hh)
    _typed(&k.drop_h, a.drop_h)
    _typed(&k.zone_h, a.zone_h)
    _typed(&k.zone_c, a.zone_c)
    _typed(&k.hdrop, a.hdrop)
    _typed(&k.zbuf, a.zbuf)
    _typed(&k.ln_w, a.ln_w)
    _typed(&k.ln_b, a.ln_b)
    _typed(&k.lnc, a.lnc)
    _typed(&k.lnw, a.lnw)
    _typed(&k.lnrows, a.lnrows)
    _typed(&k.dln_w, a.dln_w)
    _typed(&k.dln_b, a.dln_b)


cdef int _run(Args* a, int tn, BodyF body_f, BodyD body_d) except -1:
    """Run a body on the checked arguments a: the float32 or the float64 specialization, as the
    dtype number tn says, without the GIL (on the kernels' threads: _drive); then check the debug
    build's guards."""
    cdef CellF f
    cdef CellD d
    a.d.b0, a.d.b1, a.d.pre, a.d.post = 0, a.d.B, True, True
    if tn == cnp.NPY_FLOAT:
        _view(a, &f)
        with nogil:
            _drive(&f, body_f, body_d)
    else:
        _view(a, &d)
        with nogil:
            _drive(&d, body_f, body_d)
    return _verify()


# The threads. Each batch row's recurrence is independent of the other rows, so a body's time loop
# runs on a slice of rows [b0, b1) from start to end with no synchronisation per step: its rows of
# each step's GEMM (on the shared packed W_hh), of the row passes and of the padded-row carry. What
# all rows share runs once, before and after, on the calling thread: the body's first part (pre:
# packing W_hh, the bias sums, the input projection of all steps) and its last (post: the deferred
# weight-gradient GEMMs); their big GEMMs split their own rows across the threads (pgemm).


cdef struct Rows:               # _drive's job: a body and its arguments (f or d)
    CellF* f
    CellD* d
    BodyF body_f
    BodyD body_d


cdef inline void _slice(Dims* d, int i, int n) noexcept nogil:
    """Part i of n of the batch rows, no shared part."""
    d.b0 = <int>(<Py_ssize_t>d.B * i // n)
    d.b1 = <int>(<Py_ssize_t>d.B * (i + 1) // n)
    d.pre = d.post = False


cdef void _rows(void* arg, int i, int n) noexcept nogil:
    """One thread's part of a _drive: the body's time loop on its slice of the rows."""
    cdef Rows* r = <Rows*>arg
    cdef CellF f
    cdef CellD d
    if r.f != NULL:
        f = r.f[0]
        _slice(&f.d, i, n)
        r.body_f(&f)
    else:
        d = r.d[0]
        _slice(&d.d, i, n)
        r.body_d(&d)


cdef void _drive(Cell* k, BodyF body_f, BodyD body_d) noexcept nogil:
    """Run the body on k: in one call, or, when its time loop is worth more than one thread
    (_pool._parts: about T * B * H * 2H multiply-adds), its first part on this thread, the loop on
    `parts` slices of the rows on the pool, then its last part on this thread."""
    cdef int parts = _parts(<double>k.d.T * k.d.B * k.d.H * (2.0 * k.d.H + 32), k.d.B)
    cdef Rows r
    r.f = NULL
    r.d = NULL
    r.body_f = body_f
    r.body_d = body_d
    if parts > 1:
        k.d.b1 = 0                  # the first part alone
        k.d.post = False
        if Cell is CellF:
            body_f(k)
            r.f = k
        else:
            body_d(k)
            r.d = k
        _parallel(_rows, &r, parts)
        k.d.pre = False             # the last part alone
        k.d.post = True
    if Cell is CellF:
        body_f(k)
    else:
        body_d(k)


# ---------------------------------------------------------------------------------------------
# 2. shared helpers and argument checks


cdef inline bint _real(Dims* d, Py_ssize_t t, Py_ssize_t b) noexcept nogil:
    return d.lengths == NULL or t < d.lengths[b]


cdef inline void _deferred_grads(Cell* k, int G, bint gru) noexcept nogil:
    """After a backward time loop, over all steps at once, from the gate gradients dG (TB, G) the
    loop left at the start of the workspace: dx = dG W_ih (unless skipped), dW_ih = dG^T X,
    dW_hh = dG_h^T Hprev (one GEMM each), and the biases as column sums. dG_h, the gradient
    w.r.t. h @ W_hh.T, is dG itself but for the GRU's n block, whose gradient dGhn (TB, H)
    follows dG in the workspace: dW_hh and db_hh take their last H rows from it."""
    cdef int TB = k.d.T * k.d.B, I = k.d.nI, iH = k.d.H, Gh = G - k.d.H if gru else G
    cdef Py_ssize_t t, BH = <Py_ssize_t>k.d.B * k.d.H
    dG = k.ws
    dGhn = dG + <Py_ssize_t>TB * G          # GRU only
    hprev = k.hprev
    if k.drop_h != NULL:            # recurrent dropout: dW_hh from the states the GEMMs read
        for t in range(k.d.T):
            _mask_mul(k.hdrop + t * BH, k.hprev + t * BH, k.drop_h, BH)
        hprev = k.hdrop
    if k.w_ih == NULL:          # a cell on its input projection (x = xw): dxw = dG, no dW_ih
        if k.dx != NULL:
            _copy(k.dx, dG, <Py_ssize_t>TB * G)
    else:
        if k.dx != NULL:
            pgemm(False, False, TB, I, G, 1, dG, G, k.w_ih, I, 0, k.dx, I)
        pgemm(True, False, G, I, TB, _alpha(dG, k.d.s_ih), dG, G, k.x, I, 0, k.dw_ih, I)
    pgemm(True, False, Gh, iH, TB, _alpha(dG, k.d.s_hh), dG, G, hprev, iH, 0, k.dw_hh, iH)
    if gru:
        pgemm(True, False, iH, iH, TB, _alpha(dG, k.d.s_hh), dGhn, iH, hprev, iH, 0,
              k.dw_hh + Gh * iH, iH)
    if k.db_ih != NULL:
        _colsum(dG, TB, G, k.db_ih)
        _scaled_copy(k.db_hh, k.db_ih, Gh, k.d.sb_hh)
        _scale(k.db_ih, G, k.d.sb_ih)
    elif k.db_hh != NULL:       # input projection given: b_hh's gradient only
        _colsum(dG, TB, G, k.db_hh)
        _scale(k.db_hh, Gh, k.d.sb_hh)
    if k.db_hh != NULL and gru:
        _colsum(dGhn, TB, iH, k.db_hh + Gh)
        _scale(k.db_hh + Gh, iH, k.d.sb_hh)


cdef inline void _bias_sum(floating* b_ih, floating* b_hh, floating* out,
                          Py_ssize_t n) noexcept nogil:
    """out[:n] = b_ih[:n] + b_hh[:n]; b_hh alone on an input projection (b_ih is in it); zeros
    without bias (so the row loops never branch)."""
    cdef Py_ssize_t j
    if b_hh == NULL:
        _zero(out, n)
    elif b_ih == NULL:
        _copy(out, b_hh, n)
    else:
        for j in range(n):
            out[j] = b_ih[j] + b_hh[j]


cdef inline void _project(Dims* d, int G, floating* x, floating* w_ih, floating* out,
                          int ld) noexcept nogil:
    """out (T*B rows, row stride ld) [:, :G] = x @ W_ih.T, one GEMM for all steps; or, for a cell
    on its input projection (no W_ih), x's rows themselves."""
    cdef Py_ssize_t r, TB = d.T * d.B
    cdef int I = d.nI
    if w_ih == NULL:
        for r in range(TB):
            _copy(out + r * ld, x + r * G, G)
    else:
        pgemm(False, True, d.T * d.B, G, I, 1, x, I, w_ih, I, 0, out, ld)


cdef inline void _carry_rows(Dims* d, Py_ssize_t t, floating* prev, floating* cur) noexcept nogil:
    """Padded rows of step t keep the previous state."""
    cdef Py_ssize_t b, H = d.H
    if d.lengths != NULL:
        for b in range(d.b0, d.b1):
            if t >= d.lengths[b]:
                _copy(cur + b * H, prev + b * H, H)


cdef inline void _write_ys(Dims* d, Py_ssize_t t, floating* ys, floating* cur) noexcept nogil:
    """ys[t] = state after step t, zero at padded rows (nothing when ys is NULL)."""
    cdef Py_ssize_t b, H = d.H, BH = <Py_ssize_t>d.B * d.H
    if ys == NULL:
        return
    y = ys + t * BH
    _copy(y + d.b0 * H, cur + d.b0 * H, (d.b1 - d.b0) * H)
    if d.lengths != NULL:
        for b in range(d.b0, d.b1):
            if t >= d.lengths[b]:
                _zero(y + b * H, H)


cdef int _prep(Args* k, int G, object x, str hname, object h, str cname, object c,
               object w_ih, object w_hh, bint seq) except -1:
    """Validate x, h (, c), w_ih, w_hh; fill sizes and pointers; return the dtype number.

    x is (T, B, I) for a sequence, (B, I) for a cell (T = 1); h, c are (B, H). Every other
    pointer starts NULL."""
    memset(k, 0, sizeof(Args))
    cdef cnp.ndarray ax = _anchor(x, "x", 3 if seq else 2)
    cdef int tn = cnp.PyArray_TYPE(ax)
    cdef cnp.npy_intp* s = cnp.PyArray_DIMS(ax)
    cdef Py_ssize_t T = s[0] if seq else 1
    cdef Py_ssize_t B = s[1] if seq else s[0]
    cdef Py_ssize_t I = s[2] if seq else s[1]
    cdef Py_ssize_t H
    k.x = cnp.PyArray_DATA(ax)
    k.h0 = _check(h, hname, tn, "x", 2, B, -1)
    H = cnp.PyArray_DIMS(<cnp.ndarray>h)[1]
    if H < 1:
        raise ValueError(f"{hname} must have shape ({B}, H) with H > 0, got {h.shape}")
    if T * B > INT_MAX or 5 * H > INT_MAX or I > INT_MAX:
        raise ValueError("sizes too large for 32-bit BLAS")
    if cname is not None:
        k.c0 = _check(c, cname, tn, "x", 2, B, H)
    if w_ih is None and not seq:    # a cell on its input projection: x = x_in @ W_ih.T + b_ih
        if I != G * H:
            raise ValueError(f"x must have shape ({B}, {G * H}) when w_ih is None (x is then the "
                             f"input projection, G*H = {G} * {H} columns), got {x.shape}")
        k.w_ih = NULL
    else:
        k.w_ih = _check(w_ih, "w_ih", tn, "x", 2, G * H, I)
    k.w_hh = _check(w_hh, "w_hh", tn, "x", 2, G * H, H)
    k.d.T, k.d.B, k.d.nI, k.d.H = T, B, I, H
    return tn


cdef bint _prep_bias(Args* k, int n, object b_ih, object b_hh, int tn) except -1:
    if k.w_ih == NULL:              # input projection given: b_ih is part of it
        if b_ih is not None:
            raise ValueError("b_ih must be None when w_ih is None (x is the input projection, "
                             "b_ih already added), got an array")
        k.b_ih = NULL
        k.b_hh = NULL if b_hh is None else _check(b_hh, "b_hh", tn, "x", 1, n)
        return b_hh is not None
    if b_ih is None and b_hh is None:
        k.b_ih = k.b_hh = NULL
        return False
    if b_ih is None or b_hh is None:
        got = lambda b: "None" if b is None else "an array"
        raise ValueError("b_ih and b_hh must both be arrays or both be None, "
                         f"got b_ih={got(b_ih)} and b_hh={got(b_hh)}")
    k.b_ih = _check(b_ih, "b_ih", tn, "x", 1, n)
    k.b_hh = _check(b_hh, "b_hh", tn, "x", 1, n)
    return True


cdef object _prep_lengths(Args* k, object lengths):
    """lengths: None, or integers of shape (B,) in [1, T]; returns the int64 array to keep alive."""
    if lengths is None:
        k.d.lengths = NULL
        return None
    cdef cnp.ndarray L = lengths if cnp.PyArray_Check(lengths) else np.asarray(lengths)
    if L.dtype.kind not in "iu":
        raise ValueError(f"lengths must be an integer array, got dtype {L.dtype}")
    if cnp.PyArray_NDIM(L) != 1 or cnp.PyArray_DIMS(L)[0] != k.d.B:
        raise ValueError(f"lengths must have shape ({k.d.B},), got {(<object>L).shape}")
    if cnp.PyArray_TYPE(L) != cnp.NPY_INT64 or not cnp.PyArray_ISCARRAY_RO(L):
        if L.dtype.kind == "u" and L.max() > k.d.T:          # before a wrap-around cast
            raise ValueError(f"lengths must lie in [1, {k.d.T}], got max {L.max()}")
        L = np.ascontiguousarray(L, dtype=np.int64)
    cdef int64_t* p = <int64_t*>cnp.PyArray_DATA(L)
    cdef Py_ssize_t b
    for b in range(k.d.B):
        if p[b] < 1 or p[b] > k.d.T:
            raise ValueError(f"lengths must lie in [1, {k.d.T}], got {p[b]} at index {b}")
    k.d.lengths = p
    return L


cdef object _packed_w(Args* k, int tn, tuple blocks):
    """The buffer _pack fills with W_hh for a sequence's per-step GEMMs: room for each (n, k) in
    blocks, one packed op(B) of k x n after the other, as the body packs them (forward:
    op(B) = W_hh.T, (G*H, H); backward: op(B) = W_hh, (H, G*H); the GRU backward packs the r, z
    rows and the n rows apart). A NumPy array, so tracemalloc counts it and the debug build guards
    it; sets k.pw. None (k.pw = NULL) for a single step or when the small kernel is off: the
    per-step GEMMs then run on gemm()."""
    cdef Py_ssize_t size = 0
    k.pw = NULL
    if k.d.T < 2 or SMALL_GEMM == 0:
        return None
    for n, kk in blocks:
        size += mg_packed_lenf(n, kk) if tn == cnp.NPY_FLOAT else mg_packed_lend(n, kk)
    buf = _empty(tn, size)
    k.pw = _data(buf)
    return buf


cdef bint _relu(object nonlinearity) except -1:
    if nonlinearity == "tanh":
        return False
    if nonlinearity == "relu":
        return True
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


cdef int _check_cache(object cache, str names) except -1:
    cdef Py_ssize_t n = names.count(",") + 1
    if not isinstance(cache, tuple) or len(<tuple>cache) != n:
        got = (f"a tuple of length {len(<tuple>cache)}" if isinstance(cache, tuple)
               else type(cache).__name__)
        raise ValueError(f"cache must be a tuple of {n} arrays ({names}), got {got}")
    return 0


cdef object _prep_ln(Args* k, int tn, object ln, int nb):
    """ln: None (layer norm off: every LN pointer stays NULL) or (gain, shift), each (nb*H,);
    sets their pointers. Returns the forward's zero row, (4H,) (k.lnw), or None."""
    if ln is None:
        return None
    if not isinstance(ln, tuple) or len(<tuple>ln) != 2:
        got = (f"a tuple of length {len(<tuple>ln)}" if isinstance(ln, tuple)
               else type(ln).__name__)
        raise ValueError(f"ln must be None or a tuple (gain, shift) of two arrays, got {got}")
    cdef Py_ssize_t n = nb * k.d.H
    k.ln_w = _check(ln[0], "ln gain", tn, "x", 1, n)
    k.ln_b = _check(ln[1], "ln shift", tn, "x", 1, n)
    zero = np.zeros(4 * k.d.H, np.float32 if tn == cnp.NPY_FLOAT else np.float64)
    k.lnw = _data(zero)
    return zero


cdef object _ln_cache_out(Args* k, int tn, int nb, bint seq):
    """The forward's LN cache, (T, B, nb*H + nb) ((B, nb*H + nb) for a cell), or None (off)."""
    if k.ln_w == NULL:
        return None
    cdef Py_ssize_t w = nb * k.d.H + nb
    lnc = _cache_empty(tn, k.d.T, k.d.B, w) if seq else _empty(tn, k.d.B, w)
    k.lnc = _data(lnc)
    return lnc


cdef tuple _ln_backward(Args* k, int tn, object ln, int nb, object cache, str names):
    """A backward's cache and LN arguments: without ln, (cache, ()) after checking that a
    sequence's cache holds `names`; with it, the cache holds the LN cache lnc last (a cell's is
    (gates, lnc)): returns (the cache without lnc, (dgain, shift gradient, buffers to keep))."""
    cdef bint seq = names is not None
    if _prep_ln(k, tn, ln, nb) is None:
        if seq:
            _check_cache(cache, names)
        return cache, ()
    _check_cache(cache, (names if seq else "gates") + ", lnc")
    return (cache if seq else cache[0]), _ln_grads(k, tn, nb, cache[len(cache) - 1], seq)


cdef tuple _ln_grads(Args* k, int tn, int nb, object lnc, bint seq):
    """A backward's LN arguments: checks the LN cache lnc, allocates the per-row scratch and
    accumulators (zeroed), the LSTM's scratch and the gain and shift gradients; returns (dgain,
    shift gradient, buffers to keep)."""
    cdef Py_ssize_t n = nb * k.d.H, T = k.d.T, B = k.d.B
    if seq:
        k.lnc = _check(lnc, "lnc", tn, "x", 3, T, B, n + nb)
    else:
        k.lnc = _check(lnc, "lnc", tn, "x", 2, B, n + nb)
    rows = np.zeros(B * 3 * n, np.float32 if tn == cnp.NPY_FLOAT else np.float64)
    scratch = _empty(tn, B * k.d.H)
    dln_w, dln_b = _empty(tn, n), _empty(tn, n)
    k.lnrows, k.lnw, k.dln_w, k.dln_b = _data(rows), _data(scratch), _data(dln_w), _data(dln_b)
    return dln_w, dln_b, (rows, scratch)


_PARAM_GRADS = ("dw_ih", "dw_hh", "db_ih", "db_hh")


def _inputs(*args):
    """The arrays among a call's arguments, tuples (caches, masks, ln) opened."""
    res = []
    for a in args:
        if type(a) is tuple or type(a) is list:
            res.extend([v for v in a if cnp.PyArray_Check(v)])
        elif cnp.PyArray_Check(a):
            res.append(a)
    return tuple(res)


cdef tuple _param_grads(Args* k, int tn, Py_ssize_t GH, bint has_bias, object out=None,
                        object scale=1.0, tuple inputs=()):
    """A backward's weight and bias gradients (dw_ih, dw_hh, db_ih, db_hh), pointed to by k (GH =
    G * H rows): new arrays, or the arrays ``out`` gives (checked by _grads_out against the call's
    ``inputs``), which receive scale times the gradient.  For a cell on an input projection (no
    W_ih) dw_ih and db_ih are None (they belong to the projection)."""
    cdef double s
    proj = k.w_ih == NULL
    shapes = (None if proj else (GH, k.d.nI), (GH, k.d.H),
              (GH,) if has_bias and not proj else None, (GH,) if has_bias else None)
    o = _grads_out(out, _PARAM_GRADS, shapes, tn, inputs, scale, &s)
    grads = []
    for i in range(4):
        if shapes[i] is None:
            grads.append(None)
        elif o[i] is not None:
            grads.append(o[i])
        elif i < 2:
            grads.append(_empty(tn, shapes[i][0], shapes[i][1]))
        else:
            grads.append(_empty(tn, shapes[i][0]))
    dw_ih, dw_hh, db_ih, db_hh = grads
    k.d.s_ih = 1.0 if o[0] is None else s
    k.d.s_hh = 1.0 if o[1] is None else s
    k.d.sb_ih = 1.0 if o[2] is None else s
    k.d.sb_hh = 1.0 if o[3] is None else s
    k.dw_ih = NULL if dw_ih is None else _data(dw_ih)
    k.dw_hh = _data(dw_hh)
    k.db_ih = NULL if db_ih is None else _data(db_ih)
    k.db_hh = NULL if db_hh is None else _data(db_hh)
    return dw_ih, dw_hh, db_ih, db_hh


cdef tuple _state_grads(Args* k, int tn, bint seq, bint need_dx, bint need_dh, bint lstm):
    """A backward's (dx, dh, dc), new arrays pointed to by k: dx of x's shape when need_dx, dh
    (and for lstm dc) (B, H) when need_dh; each None, and its pointer NULL, when not needed."""
    cdef Py_ssize_t B = k.d.B, H = k.d.H
    dx = dh = dc = None
    if need_dx:
        dx = _empty(tn, k.d.T, B, k.d.nI) if seq else _empty(tn, B, k.d.nI)
    if need_dh:
        dh = _empty(tn, B, H)
        if lstm:
            dc = _empty(tn, B, H)
    k.dx = _data(dx) if need_dx else NULL
    k.dh0 = _data(dh) if need_dh else NULL
    k.dc0 = _data(dc) if need_dh and lstm else NULL
    return dx, dh, dc


cdef object _seq_states(Args* k, int tn, void** first):
    """(T+1, B, H) state array with [0] = the initial state at *first; afterwards *first points
    at row 1 (the state after step 0), where the bodies write."""
    s = _cache_empty(tn, k.d.T + 1, k.d.B, k.d.H)
    memcpy(cnp.PyArray_DATA(s), first[0], k.d.B * k.d.H * cnp.PyArray_ITEMSIZE(s))
    first[0] = _data(s, k.d.B * k.d.H)
    return s


cdef object _outputs(Args* k, int tn, cnp.ndarray hs):
    """The outputs ys (T, B, H). Without lengths they are the states after each step, hs[1:]:
    a view of the cache, not a copy (T*B*H elements less to write and to hold: 13 MB for
    64 x 100 x 512); k.ys stays NULL so the bodies write nothing more. With lengths, padded
    steps output zeros while the state carries on, so ys is its own array (k.ys)."""
    k.ys = NULL
    if k.d.lengths == NULL:
        return hs[1:]
    ys = _empty(tn, k.d.T, k.d.B, k.d.H)
    k.ys = _data(ys)
    return ys


cdef object _last(cnp.ndarray s, Args* k):
    """A copy of s[T] (the final state), shape (B, H)."""
    out = _empty(cnp.PyArray_TYPE(s), k.d.B, k.d.H)
    memcpy(cnp.PyArray_DATA(out), _data(s, k.d.T * k.d.B * k.d.H),
           k.d.B * k.d.H * cnp.PyArray_ITEMSIZE(s))
    return out


# ---------------------------------------------------------------------------------------------
# 2b. recurrent dropout and zoneout: optional pointers of Args (NULL when off), the row loops in
# csrc/mg_dropout.h. Dropout: the per-step GEMM reads hp * m (m = drop_h, fixed over time), so
# backward multiplies that GEMM's dh by m and dW_hh uses the masked states. Zoneout: after the
# row, h = z hp + (1 - z) h~ (z = zone_h[t]; the LSTM's c likewise with zone_c); backward gives
# the row (1 - z) dh and adds z dh to the previous state's gradient. The RNN's backward takes
# act' from the activation's output, so under zoneout its forward keeps h~ apart (in k.gates).


cdef inline void _mask_mul(floating* out, floating* a, floating* m, Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_mask_mulf(out, a, m, n)
    else:
        mg_mask_muld(out, a, m, n)


cdef inline void _mask_fma(floating* out, floating* a, floating* m, Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_mask_fmaf(out, a, m, n)
    else:
        mg_mask_fmad(out, a, m, n)


cdef inline bint _masked_state(Dims* d, floating* m, floating* hp, floating* out) noexcept nogil:
    """out = hp * m at the rows [b0, b1), the state a step's GEMM reads under recurrent dropout;
    false, and nothing written, when m is NULL."""
    cdef Py_ssize_t o = <Py_ssize_t>d.b0 * d.H, n = <Py_ssize_t>(d.b1 - d.b0) * d.H
    if m == NULL:
        return False
    _mask_mul(out + o, hp + o, m + o, n)
    return True


cdef inline void _masked_grad(Dims* d, floating* m, floating* g, floating* dhn,
                              bint acc) noexcept nogil:
    """dhn (+)= g * m at the rows [b0, b1): the gradient w.r.t. the state before a step from the
    GEMM's result g under recurrent dropout (acc: added to what the row loop put in dhn); nothing
    when m is NULL."""
    cdef Py_ssize_t o = <Py_ssize_t>d.b0 * d.H, n = <Py_ssize_t>(d.b1 - d.b0) * d.H
    if m == NULL:
        return
    if acc:
        _mask_fma(dhn + o, g + o, m + o, n)
    else:
        _mask_mul(dhn + o, g + o, m + o, n)


cdef inline void _zone_row(floating* z, Py_ssize_t off, floating* cur, floating* prev,
                           Py_ssize_t H) noexcept nogil:
    """Zoneout of one row: cur = z prev + (1 - z) cur, z = the row at off of z (NULL: off)."""
    if z != NULL:
        if floating is float:
            mg_zone_fwdf(cur, prev, z + off, H)
        else:
            mg_zone_fwdd(cur, prev, z + off, H)


cdef inline floating* _zone_grad(floating* z, Py_ssize_t off, floating* d, floating* buf,
                                 Py_ssize_t H) noexcept nogil:
    """The gradient reaching the cell's new state from d, the one w.r.t. the zoned state:
    (1 - z) d, written to buf; d itself without zoneout (z NULL)."""
    if z == NULL:
        return d
    if floating is float:
        mg_zone_bwdf(buf, d, z + off, H)
    else:
        mg_zone_bwdd(buf, d, z + off, H)
    return buf


cdef inline void _zone_direct(floating* z, Py_ssize_t off, floating* d, floating* out,
                              Py_ssize_t H) noexcept nogil:
    """out += z d: the gradient the zoned state passes straight to the previous one."""
    if z != NULL:
        _mask_fma(out, d, z + off, H)


cdef tuple _prep_masks(Args* k, int tn, object masks, int nz, bint seq, bint bwd):
    """Check masks, None or (drop_h, zone_h, zone_c), each None when off: the dropout mask
    drop_h (B, H) and zoneout's weights zone_h, zone_c ((T, B, H) for a sequence, (B, H) for a
    cell; zone_c must be None unless nz = 2: nz = 1 for the RNN and GRU, 2 for the LSTM); set
    their pointers and allocate the workspaces the bodies need; returns the arrays to keep
    alive."""
    cdef Py_ssize_t T = k.d.T, B = k.d.B, H = k.d.H
    if masks is None:
        return None, None
    if not isinstance(masks, tuple) or len(<tuple>masks) != 3:
        got = f"a tuple of length {len(masks)}" if isinstance(masks, tuple) else type(masks).__name__
        raise ValueError(f"masks must be None or a tuple (drop_h, zone_h, zone_c), got {got}")
    drop_h, zone_h, zone_c = masks
    if nz < 2 and zone_c is not None:
        raise ValueError("zone_c must be None for this cell (it has no cell state c), got an array")
    hdrop = zbuf = None
    if drop_h is not None:
        k.drop_h = _check(drop_h, "drop_h", tn, "x", 2, B, H)
        hdrop = _empty(tn, (T if bwd else 1) * B * H)
        k.hdrop = _data(hdrop)
    for name, z in (("zone_h", zone_h), ("zone_c", zone_c)):
        if z is None:
            continue
        p = _check(z, name, tn, "x", 3, T, B, H) if seq else _check(z, name, tn, "x", 2, B, H)
        if name == "zone_h":
            k.zone_h = p
        else:
            k.zone_c = p
    if bwd and (zone_h is not None or zone_c is not None):
        zbuf = _empty(tn, 2 * B * H)
        k.zbuf = _data(zbuf)
    return hdrop, zbuf


# ---------------------------------------------------------------------------------------------
# 3. the cell families

# -- RNN ---------------------------------------------------------------------------------------


cdef void _rnn_fwd(Cell* k) noexcept nogil:
    cdef Py_ssize_t T = k.d.T, B = k.d.B, H = k.d.H, BH = B * H, t, o = k.d.b0 * H
    cdef int iH = k.d.H, nb = k.d.b1 - k.d.b0
    hs = k.hs
    bias = k.ws                     # (H,)
    pw = k.pw
    if k.d.pre:
        _pack(True, iH, iH, k.w_hh, iH, pw)
        _project(&k.d, iH, k.x, k.w_ih, hs, iH)
        if k.b_hh != NULL:   # the biases join the input projection, so that each step's activation
            _bias_sum(k.b_ih, k.b_hh, bias, H)  # is one pass over B*H elements (no per-row calls,
            _add_rows(hs, bias, T * B, H)       # no row tails)
    for t in range(T):
        hp = k.h0 if t == 0 else hs + (t - 1) * BH
        ht = hs + t * BH
        hg = k.hdrop if _masked_state(&k.d, k.drop_h, hp, k.hdrop) else hp
        gemm_p(pw, False, True, nb, iH, iH, 1, hg + o, iH, k.w_hh, iH, 1, ht + o, iH)
        mg_rnn_act(Cell is CellD, ht + o, k.d.relu, nb * H)
        if k.zone_h != NULL:        # zoneout: h~ kept in gates (the backward's act'), then mixed
            _copy(k.gates + t * BH + o, ht + o, nb * H)
            _zone_row(k.zone_h, t * BH + o, ht + o, hp + o, nb * H)
        _carry_rows(&k.d, t, hp, ht)
        _write_ys(&k.d, t, k.ys, ht)


cdef void _rnn_bwd(Cell* k) noexcept nogil:
    cdef Py_ssize_t T = k.d.T, B = k.d.B, H = k.d.H, BH = B * H, t, b, o = k.d.b0 * H
    cdef int iH = k.d.H, nb = k.d.b1 - k.d.b0
    cdef bint acc
    dA = k.ws                       # (T, B, H) pre-activation gradients
    w0 = dA + T * BH                # (B, H) x 2: the gradient w.r.t. the
    w1 = w0 + BH                    # state after and before each step
    dys = k.dys
    dh = k.dh_n                     # the gradient w.r.t. the state after step t: the caller's
    if dys != NULL:                 # array while the loop only reads it, else a copy in w0
        _copy(w0 + o, dh + o, nb * H)
        dh = w0
    hs = k.hs                       # the activations' outputs: h~ (k.gates) under zoneout
    pw = k.pw
    zh = k.zone_h                   # zoneout: the activation gets (1 - z) dh (in zbuf), the
    acc = k.d.lengths != NULL or zh != NULL     # state before the step z dh, then the GEMM's
    if k.d.pre:
        _pack(False, iH, iH, k.w_hh, iH, pw)
    # step t writes the gradient w.r.t. the state before it to dh0 at t = 0 (no copy after the
    # loop; unless need_dh0 is false), else to the workspace buffer the current one is not in
    for t in range(T - 1, -1, -1):
        dhn = k.dh0 if t == 0 and k.dh0 != NULL else (w1 if dh == w0 else w0)
        if k.d.lengths == NULL:            # every row real: one pass over the B*H elements
            if dys != NULL:
                _add(dh + o, dys + t * BH + o, nb * H)
            mg_rnn_bwd_row(Cell is CellD, _zone_grad(zh, t * BH + o, dh + o, k.zbuf + o, nb * H),
                           hs + t * BH + o, dA + t * BH + o, k.d.relu, nb * H)
            if zh != NULL:
                _mask_mul(dhn + o, dh + o, zh + t * BH + o, nb * H)
        else:
            for b in range(k.d.b0, k.d.b1):
                if _real(&k.d, t, b):
                    if dys != NULL:
                        _add(dh + b * H, dys + t * BH + b * H, H)
                    mg_rnn_bwd_row(Cell is CellD,
                                   _zone_grad(zh, t * BH + b * H, dh + b * H, k.zbuf + b * H, H),
                                   hs + t * BH + b * H, dA + t * BH + b * H, k.d.relu, H)
                    if zh != NULL:
                        _mask_mul(dhn + b * H, dh + b * H, zh + t * BH + b * H, H)
                    else:
                        _zero(dhn + b * H, H)
                else:
                    _zero(dA + t * BH + b * H, H)
                    _copy(dhn + b * H, dh + b * H, H)
        if t > 0 or k.dh0 != NULL:      # dh0 = dA_0 W_hh only when asked for (need_dh0)
            gemm_p(pw, False, False, nb, iH, iH, 1, dA + t * BH + o, iH, k.w_hh, iH,
                   1 if acc and k.drop_h == NULL else 0,
                   (dhn if k.drop_h == NULL else k.hdrop) + o, iH)
            _masked_grad(&k.d, k.drop_h, k.hdrop, dhn, acc)
        dh = dhn
    if k.d.post:
        _deferred_grads(k, iH, False)


cdef object _rnn_outputs(Args* k, int tn, bint seq):
    """The RNN's activation outputs h~ under zoneout, (T, B, H) ((B, H) for a cell), at
    k.gates: the backward's act' needs them, the states hold z h_prev + (1 - z) h~."""
    ht = _cache_empty(tn, k.d.T, k.d.B, k.d.H) if seq else _empty(tn, k.d.B, k.d.H)
    k.gates = _data(ht)
    return ht


def rnn_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity, masks=None):
    """h1 = act(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh); cache = h1, the same array (the twin
    returns a copy; nothing writes to either, and the copy cost 0.4 of the cell's 8 us). With
    zoneout (masks' zone_h) h1 = zone_h h + (1 - zone_h) h~ and cache = h~, a new array."""
    cdef Args k
    cdef int tn = _prep(&k, 1, x, "h", h, None, None, w_ih, w_hh, False)
    _prep_bias(&k, k.d.H, b_ih, b_hh, tn)
    k.d.relu = _relu(nonlinearity)
    h1 = _empty(tn, k.d.B, k.d.H)
    kept = _prep_masks(&k, tn, masks, 1, False, False)
    ws = _borrow(tn, k.d.H)
    k.hs, k.ws = cnp.PyArray_DATA(h1), cnp.PyArray_DATA(ws)
    cache = _rnn_outputs(&k, tn, False) if k.zone_h != NULL else h1
    _run(&k, tn, _rnn_fwd[CellF], _rnn_fwd[CellD])
    _give_back(tn, ws)
    return h1, cache


def rnn_cell_backward(dh1, x, h, w_ih, w_hh, cache, has_bias, nonlinearity, need_dx=True,
                      need_dh=True, masks=None):
    """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh when
    need_dh is (its GEMM skipped)."""
    cdef Args k
    cdef int tn = _prep(&k, 1, x, "h", h, None, None, w_ih, w_hh, False)
    cdef Py_ssize_t B = k.d.B, H = k.d.H
    k.d.relu = _relu(nonlinearity)
    k.dh_n = _check(dh1, "dh1", tn, "x", 2, B, H)
    k.hs = _check(cache, "cache", tn, "x", 2, B, H)
    k.hprev = k.h0
    dx, dh, _ = _state_grads(&k, tn, False, need_dx, need_dh, False)
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(&k, tn, H, has_bias)
    kept = _prep_masks(&k, tn, masks, 1, False, True)
    ws = _borrow(tn, 3 * B * H)
    k.ws = _data(ws)
    _run(&k, tn, _rnn_bwd[CellF], _rnn_bwd[CellD])
    _give_back(tn, ws)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def rnn_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, masks=None):
    """-> (ys, h_n, cache), cache = (hs,), hs (T+1, B, H); with zoneout (hs, ht), ht (T, B, H)
    the activations' outputs h~ of each step (hs holds the zoned states)."""
    cdef Args k
    cdef int tn = _prep(&k, 1, x, "h0", h0, None, None, w_ih, w_hh, True)
    _prep_bias(&k, k.d.H, b_ih, b_hh, tn)
    L = _prep_lengths(&k, lengths)
    k.d.relu = _relu(nonlinearity)
    k.hs = k.h0
    pw = _packed_w(&k, tn, ((k.d.H, k.d.H),))
    hs = _seq_states(&k, tn, &k.hs)
    ys = _outputs(&k, tn, hs)
    kept = _prep_masks(&k, tn, masks, 1, True, False)
    ws = _borrow(tn, k.d.H)
    k.ws = _data(ws)
    cache = (hs, _rnn_outputs(&k, tn, True)) if k.zone_h != NULL else (hs,)
    _run(&k, tn, _rnn_fwd[CellF], _rnn_fwd[CellD])
    _give_back(tn, ws)
    return ys, _last(hs, &k), cache


def rnn_sequence_backward(dys, dh_n, x, h0, w_ih, w_hh, cache, lengths, has_bias, nonlinearity,
                          need_dx=True, need_dh0=True, masks=None, out=None, scale=1.0):
    """-> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh0 when
    need_dh0 is (the last step's GEMM is skipped).
    dys None: no gradient reaches the outputs (only the final state was used); no step adds one.
    out: None, or (dw_ih, dw_hh, db_ih, db_hh) with entries None or arrays that receive scale
    times that gradient (returned in its place)."""
    cdef Args k
    cdef int tn = _prep(&k, 1, x, "h0", h0, None, None, w_ih, w_hh, True)
    cdef Py_ssize_t T = k.d.T, B = k.d.B, H = k.d.H
    L = _prep_lengths(&k, lengths)
    k.d.relu = _relu(nonlinearity)
    kept = _prep_masks(&k, tn, masks, 1, True, True)
    _check_cache(cache, "hs, ht" if k.zone_h != NULL else "hs")
    k.dys = NULL if dys is None else _check(dys, "dys", tn, "x", 3, T, B, H)
    k.dh_n = _check(dh_n, "dh_n", tn, "x", 2, B, H)
    k.hprev = _check(cache[0], "hs", tn, "x", 3, T + 1, B, H)
    if k.zone_h != NULL:
        k.hs = _check(cache[1], "ht", tn, "x", 3, T, B, H)
    else:
        k.hs = _data(cache[0], B * H)
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(&k, tn, H, has_bias, out, scale,
                                              _inputs(dys, dh_n, x, h0, w_ih, w_hh, cache, masks))
    pw = _packed_w(&k, tn, ((H, H),))
    dx, dh0, _ = _state_grads(&k, tn, True, need_dx, need_dh0, False)
    ws = _borrow(tn, (T + 2) * B * H)
    k.ws = _data(ws)
    _run(&k, tn, _rnn_bwd[CellF], _rnn_bwd[CellD])
    _give_back(tn, ws)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# -- LSTM: gates row (5H) = [i | f | g | o | tanh(c1)] -------------------------------------------


cdef void _lstm_fwd(Cell* k) noexcept nogil:
    cdef Py_ssize_t T = k.d.T, B = k.d.B, H = k.d.H, BH = B * H, L = 5 * H, t, b, o = k.d.b0 * H
    cdef Py_ssize_t LC = 5 * H + 5  # a row of the LN cache
    cdef int iH = k.d.H, G = 4 * k.d.H, iL = 5 * k.d.H, nb = k.d.b1 - k.d.b0
    hs = k.hs
    cs = k.cs
    gates = k.gates
    bias = k.ws                     # (4H,)
    pw = k.pw
    if k.d.pre:
        _pack(True, G, iH, k.w_hh, iH, pw)
        _bias_sum(k.b_ih, k.b_hh, bias, 4 * H)
        # input projection of all T*B rows into the gate columns of the cache (row stride 5H)
        _project(&k.d, G, k.x, k.w_ih, gates, iL)
    for t in range(T):
        hp = k.h0 if t == 0 else hs + (t - 1) * BH
        cp = k.c0 if t == 0 else cs + (t - 1) * BH
        gt = gates + t * B * L
        hg = k.hdrop if _masked_state(&k.d, k.drop_h, hp, k.hdrop) else hp
        gemm_p(pw, False, True, nb, G, iH, 1, hg + o, iH, k.w_hh, iH, 1, gt + k.d.b0 * L, iL)
        for b in range(k.d.b0, k.d.b1):
            if k.ln_w != NULL:
                mg_lstm_ln_pre(Cell is CellD, gt + b * L, bias, k.lnw, k.ln_w, k.ln_b,
                               k.lnc + (t * B + b) * LC, H)
            mg_lstm_fwd_row(Cell is CellD, gt + b * L, bias if k.ln_w == NULL else k.lnw,
                            cp + b * H, cs + t * BH + b * H, hs + t * BH + b * H, H)
            if k.ln_w != NULL:
                mg_lstm_ln_post(Cell is CellD, gt + b * L, cs + t * BH + b * H,
                                hs + t * BH + b * H, k.lnw, k.ln_w, k.ln_b,
                                k.lnc + (t * B + b) * LC, H)
            _zone_row(k.zone_h, t * BH + b * H, hs + t * BH + b * H, hp + b * H, H)
            _zone_row(k.zone_c, t * BH + b * H, cs + t * BH + b * H, cp + b * H, H)
        _carry_rows(&k.d, t, hp, hs + t * BH)
        _carry_rows(&k.d, t, cp, cs + t * BH)
        _write_ys(&k.d, t, k.ys, hs + t * BH)


cdef void _lstm_bwd(Cell* k) noexcept nogil:
    cdef Py_ssize_t T = k.d.T, B = k.d.B, H = k.d.H, BH = B * H, L = 5 * H, G = 4 * H, t, b
    cdef bint acc
    cdef Py_ssize_t o = k.d.b0 * H
    cdef Py_ssize_t LC = 5 * H + 5  # a row of the LN cache
    cdef int iH = k.d.H, iG = 4 * k.d.H, nb = k.d.b1 - k.d.b0
    dG = k.ws                       # (T, B, 4H)
    wh0 = dG + T * B * G            # (B, H) x 4: the gradients w.r.t. h
    wh1 = wh0 + BH                  # and c after and before each step
    wc0 = wh1 + BH
    wc1 = wc0 + BH
    dys = k.dys
    dh = k.dh_n                     # the gradient w.r.t. the state after step t: the caller's
    if dys != NULL:                 # array while the loop only reads it, else a copy in wh0
        _copy(wh0 + o, dh + o, nb * H)
        dh = wh0
    dc = k.dc_n                     # only read
    gates = k.gates
    cprev = k.cprev
    pw = k.pw
    if k.d.pre:
        _pack(False, iH, iG, k.w_hh, iH, pw)
    # step t writes the gradient w.r.t. the state before it to dh0 at t = 0 (no copy after the
    # loop; unless need_dh0 is false), else to the workspace buffer the current one is not in
    for t in range(T - 1, -1, -1):
        dhn = k.dh0 if t == 0 and k.dh0 != NULL else (wh1 if dh == wh0 else wh0)
        dcn = k.dc0 if t == 0 and k.dc0 != NULL else (wc1 if dc == wc0 else wc0)
        for b in range(k.d.b0, k.d.b1):
            if _real(&k.d, t, b):
                if dys != NULL:
                    _add(dh + b * H, dys + t * BH + b * H, H)
                dhr = _zone_grad(k.zone_h, t * BH + b * H, dh + b * H, k.zbuf + b * H, H)
                dcr = _zone_grad(k.zone_c, t * BH + b * H, dc + b * H, k.zbuf + BH + b * H, H)
                if k.ln_w != NULL:  # the row's gate gradients go to its LN scratch row first
                    lrow = k.lnrows + b * 3 * L
                    mg_lstm_ln_bwd_pre(Cell is CellD, gates + (t * B + b) * L, dhr, dcr, k.ln_w,
                                       k.lnc + (t * B + b) * LC, k.lnw + b * H, lrow, lrow + L,
                                       H)
                    dcr = k.lnw + b * H
                mg_lstm_bwd_row(Cell is CellD, gates + (t * B + b) * L, dhr, dcr,
                                cprev + t * BH + b * H,
                                dG + (t * B + b) * G if k.ln_w == NULL else lrow, dcn + b * H, H)
                if k.ln_w != NULL:
                    mg_lstm_ln_bwd_post(Cell is CellD, dG + (t * B + b) * G, lrow, lrow + L,
                                        k.ln_w, k.lnc + (t * B + b) * LC, H)
                _zone_direct(k.zone_c, t * BH + b * H, dc + b * H, dcn + b * H, H)
                if k.d.lengths != NULL or k.zone_h != NULL:
                    _zero(dhn + b * H, H)
                    _zone_direct(k.zone_h, t * BH + b * H, dh + b * H, dhn + b * H, H)
            else:
                _zero(dG + (t * B + b) * G, G)
                _copy(dhn + b * H, dh + b * H, H)
                _copy(dcn + b * H, dc + b * H, H)
        if t > 0 or k.dh0 != NULL:
            acc = k.d.lengths != NULL or k.zone_h != NULL       # dhn holds the rows' part
            gemm_p(pw, False, False, nb, iH, iG, 1, dG + (t * B + k.d.b0) * G, iG, k.w_hh, iH,
                   1 if acc and k.drop_h == NULL else 0,
                   (dhn if k.drop_h == NULL else k.hdrop) + o, iH)
            _masked_grad(&k.d, k.drop_h, k.hdrop, dhn, acc)
        dh = dhn
        dc = dcn
    if k.d.post:
        if k.ln_w != NULL:
            mg_ln_grads(Cell is CellD, k.lnrows + L, B, L, 3 * L, k.dln_w, k.dln_b)
        _deferred_grads(k, iG, False)


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, masks=None, ln=None):
    """-> (h1, c1, cache), cache (B, 5H) = [i | f | g | o | tanh(c1)]; with layer norm (ln =
    (gain, shift), (5H,) each) cache = (that, lnc) and the fifth block holds tanh(LN(c1))."""
    cdef Args k
    cdef int tn = _prep(&k, 4, x, "h", h, "c", c, w_ih, w_hh, False)
    _prep_bias(&k, 4 * k.d.H, b_ih, b_hh, tn)
    zero = _prep_ln(&k, tn, ln, 5)
    lnc = _ln_cache_out(&k, tn, 5, False)
    h1, c1 = _empty(tn, k.d.B, k.d.H), _empty(tn, k.d.B, k.d.H)
    cache = _empty(tn, k.d.B, 5 * k.d.H)
    kept = _prep_masks(&k, tn, masks, 2, False, False)
    ws = _borrow(tn, 4 * k.d.H)
    k.hs, k.cs, k.gates, k.ws = _data(h1), _data(c1), _data(cache), _data(ws)
    _run(&k, tn, _lstm_fwd[CellF], _lstm_fwd[CellD])
    _give_back(tn, ws)
    return h1, c1, cache if lnc is None else (cache, lnc)


def lstm_cell_backward(dh1, dc1, x, h, c, w_ih, w_hh, cache, has_bias, need_dx=True,
                       need_dh=True, masks=None, ln=None):
    """-> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh and dc
    when need_dh is (the dh GEMM skipped). With ln: cache = (gates, lnc), and the gain and shift
    gradients follow."""
    cdef Args k
    cdef int tn = _prep(&k, 4, x, "h", h, "c", c, w_ih, w_hh, False)
    cdef Py_ssize_t B = k.d.B, H = k.d.H
    cache, dln = _ln_backward(&k, tn, ln, 5, cache, None)
    k.dh_n = _check(dh1, "dh1", tn, "x", 2, B, H)
    k.dc_n = _check(dc1, "dc1", tn, "x", 2, B, H)
    k.gates = _check(cache, "cache", tn, "x", 2, B, 5 * H)
    k.hprev, k.cprev = k.h0, k.c0
    dx, dh, dc = _state_grads(&k, tn, False, need_dx, need_dh, True)
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(&k, tn, 4 * H, has_bias)
    kept = _prep_masks(&k, tn, masks, 2, False, True)
    ws = _borrow(tn, 8 * B * H)
    k.ws = _data(ws)
    _run(&k, tn, _lstm_bwd[CellF], _lstm_bwd[CellD])
    _give_back(tn, ws)
    return (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh) + dln[:2]


def lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, masks=None, ln=None):
    """-> (ys, h_n, c_n, cache), cache = (hs, cs, gates): hs, cs (T+1, B, H), gates (T, B, 5H);
    with layer norm (ln = (gain, shift)) cache = (hs, cs, gates, lnc), lnc (T, B, 5H + 5)."""
    cdef Args k
    cdef int tn = _prep(&k, 4, x, "h0", h0, "c0", c0, w_ih, w_hh, True)
    _prep_bias(&k, 4 * k.d.H, b_ih, b_hh, tn)
    zero = _prep_ln(&k, tn, ln, 5)
    lnc = _ln_cache_out(&k, tn, 5, True)
    L = _prep_lengths(&k, lengths)
    k.hs, k.cs = k.h0, k.c0
    pw = _packed_w(&k, tn, ((4 * k.d.H, k.d.H),))
    hs = _seq_states(&k, tn, &k.hs)
    cs = _seq_states(&k, tn, &k.cs)
    gates = _cache_empty(tn, k.d.T, k.d.B, 5 * k.d.H)
    ys = _outputs(&k, tn, hs)
    kept = _prep_masks(&k, tn, masks, 2, True, False)
    ws = _borrow(tn, 4 * k.d.H)
    k.gates, k.ws = _data(gates), _data(ws)
    _run(&k, tn, _lstm_fwd[CellF], _lstm_fwd[CellD])
    _give_back(tn, ws)
    return ys, _last(hs, &k), _last(cs, &k), (hs, cs, gates) + (() if lnc is None else (lnc,))


def lstm_sequence_backward(dys, dh_n, dc_n, x, h0, c0, w_ih, w_hh, cache, lengths, has_bias,
                           need_dx=True, need_dh0=True, masks=None, ln=None, out=None, scale=1.0):
    """-> (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh0 and
    dc0 when need_dh0 is (the last step's GEMM is skipped).
    dys None: no gradient reaches the outputs (only the final state was used); no step adds one.
    With ln: cache = (hs, cs, gates, lnc), and the gain and shift gradients follow.
    out: None, or (dw_ih, dw_hh, db_ih, db_hh) with entries None or arrays that receive scale
    times that gradient (returned in its place)."""
    cdef Args k
    cdef int tn = _prep(&k, 4, x, "h0", h0, "c0", c0, w_ih, w_hh, True)
    cdef Py_ssize_t T = k.d.T, B = k.d.B, H = k.d.H
    L = _prep_lengths(&k, lengths)
    given = cache
    cache, dln = _ln_backward(&k, tn, ln, 5, cache, "hs, cs, gates")
    k.dys = NULL if dys is None else _check(dys, "dys", tn, "x", 3, T, B, H)
    k.dh_n = _check(dh_n, "dh_n", tn, "x", 2, B, H)
    k.dc_n = _check(dc_n, "dc_n", tn, "x", 2, B, H)
    k.hprev = _check(cache[0], "hs", tn, "x", 3, T + 1, B, H)
    k.cprev = _check(cache[1], "cs", tn, "x", 3, T + 1, B, H)
    k.gates = _check(cache[2], "gates", tn, "x", 3, T, B, 5 * H)
    kept = _prep_masks(&k, tn, masks, 2, True, True)
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(
        &k, tn, 4 * H, has_bias, out, scale,
        _inputs(dys, dh_n, dc_n, x, h0, c0, w_ih, w_hh, given, masks, ln))
    pw = _packed_w(&k, tn, ((H, 4 * H),))
    dx, dh0, dc0 = _state_grads(&k, tn, True, need_dx, need_dh0, True)
    ws = _borrow(tn, (4 * T + 4) * B * H)
    k.ws = _data(ws)
    _run(&k, tn, _lstm_bwd[CellF], _lstm_bwd[CellD])
    _give_back(tn, ws)
    return (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh) + dln[:2]


# -- GRU: gates row (4H) = [r | z | n | gh_n] ----------------------------------------------------


cdef void _gru_fwd(Cell* k) noexcept nogil:
    cdef Py_ssize_t T = k.d.T, B = k.d.B, H = k.d.H, BH = B * H, L = 4 * H, t, b, o = k.d.b0 * H
    cdef Py_ssize_t LC = 4 * H + 4  # a row of the LN cache
    cdef int iH = k.d.H, G = 3 * k.d.H, iL = 4 * k.d.H, nb = k.d.b1 - k.d.b0
    hs = k.hs
    gates = k.gates
    bias = k.ws                     # (4H,)
    gh = bias + 4 * H               # (B, 3H)
    bi = k.b_ih
    bh = k.b_hh
    pw = k.pw
    if k.d.pre:
        _pack(True, G, iH, k.w_hh, iH, pw)
        _bias_sum(k.b_ih, k.b_hh, bias, 2 * H)
        if bi == NULL:
            _zero(bias + 2 * H, H)
        else:
            _copy(bias + 2 * H, bi + 2 * H, H)
        if bh == NULL:
            _zero(bias + 3 * H, H)
        else:
            _copy(bias + 3 * H, bh + 2 * H, H)
        _project(&k.d, G, k.x, k.w_ih, gates, iL)
    for t in range(T):
        hp = k.h0 if t == 0 else hs + (t - 1) * BH
        gt = gates + t * B * L
        hg = k.hdrop if _masked_state(&k.d, k.drop_h, hp, k.hdrop) else hp
        gemm_p(pw, False, True, nb, G, iH, 1, hg + o, iH, k.w_hh, iH, 0, gh + k.d.b0 * G, G)
        for b in range(k.d.b0, k.d.b1):
            if k.ln_w != NULL:
                mg_gru_ln_pre(Cell is CellD, gt + b * L, gh + b * 3 * H, bias, k.lnw, k.ln_w,
                              k.ln_b, k.lnc + (t * B + b) * LC, H)
            mg_gru_fwd_row(Cell is CellD, gt + b * L, gh + b * 3 * H,
                           bias if k.ln_w == NULL else k.lnw, hp + b * H, hs + t * BH + b * H, H)
            _zone_row(k.zone_h, t * BH + b * H, hs + t * BH + b * H, hp + b * H, H)
        _carry_rows(&k.d, t, hp, hs + t * BH)
        _write_ys(&k.d, t, k.ys, hs + t * BH)


cdef void _gru_bwd(Cell* k) noexcept nogil:
    cdef Py_ssize_t T = k.d.T, B = k.d.B, H = k.d.H, BH = B * H, L = 4 * H, G = 3 * H, t, b, row
    cdef Py_ssize_t o = k.d.b0 * H
    cdef Py_ssize_t LC = 4 * H + 4  # a row of the LN cache
    cdef int iH = k.d.H, iG = 3 * k.d.H, nb = k.d.b1 - k.d.b0
    dGi = k.ws                      # (T, B, 3H) w.r.t. gi (and gh_r, gh_z)
    dGhn = dGi + T * B * G          # (T, B, H) w.r.t. gh_n
    w0 = dGhn + T * BH              # (B, H) x 2: the gradient w.r.t. the
    w1 = w0 + BH                    # state after and before each step
    dys = k.dys
    dh = k.dh_n                     # the gradient w.r.t. the state after step t: the caller's
    if dys != NULL:                 # array while the loop only reads it, else a copy in w0
        _copy(w0 + o, dh + o, nb * H)
        dh = w0
    gates = k.gates
    hprev = k.hprev
    w_n = k.w_hh + 2 * H * H        # W_hh's n rows
    # dh_prev = dG_h @ W_hh = dGi[:, :2H] @ W_hh[:2H] + dGhn @ W_hh[2H:]: two packed weights
    pw = k.pw
    pwn = pw                        # NULL stays NULL: the per-step GEMMs run on gemm()
    if pw != NULL:
        pwn = pw + _packed_len(pw, iH, 2 * iH)
    if k.d.pre:
        _pack(False, iH, 2 * iH, k.w_hh, iH, pw)
        _pack(False, iH, iH, w_n, iH, pwn)
    # step t writes the gradient w.r.t. the state before it to dh0 at t = 0 (no copy after the
    # loop; unless need_dh0 is false), else to the workspace buffer the current one is not in
    for t in range(T - 1, -1, -1):
        dhn = k.dh0 if t == 0 and k.dh0 != NULL else (w1 if dh == w0 else w0)
        for b in range(k.d.b0, k.d.b1):
            row = t * B + b
            if _real(&k.d, t, b):
                if dys != NULL:
                    _add(dh + b * H, dys + t * BH + b * H, H)
                lrow = k.lnrows + b * 3 * L if k.ln_w != NULL else NULL  # with LN: its scratch
                mg_gru_bwd_row(Cell is CellD, gates + row * L,
                               _zone_grad(k.zone_h, t * BH + b * H, dh + b * H, k.zbuf + b * H, H),
                               hprev + t * BH + b * H,
                               dGi + row * G if k.ln_w == NULL else lrow,
                               dGhn + row * H if k.ln_w == NULL else lrow + G, dhn + b * H, H)
                if k.ln_w != NULL:
                    mg_gru_ln_bwd_post(Cell is CellD, dGi + row * G, dGhn + row * H, lrow,
                                       lrow + L, k.ln_w, k.lnc + row * LC, H)
                _zone_direct(k.zone_h, t * BH + b * H, dh + b * H, dhn + b * H, H)
            else:
                _zero(dGi + row * G, G)
                _zero(dGhn + row * H, H)
                _copy(dhn + b * H, dh + b * H, H)
        if t > 0 or k.dh0 != NULL:
            dst = (dhn if k.drop_h == NULL else k.hdrop) + o
            gemm_p(pw, False, False, nb, iH, 2 * iH, 1, dGi + (t * B + k.d.b0) * G, iG, k.w_hh,
                   iH, 1 if k.drop_h == NULL else 0, dst, iH)
            gemm_p(pwn, False, False, nb, iH, iH, 1, dGhn + t * BH + o, iH, w_n, iH, 1, dst, iH)
            _masked_grad(&k.d, k.drop_h, k.hdrop, dhn, True)
        dh = dhn
    if k.d.post:
        if k.ln_w != NULL:
            mg_ln_grads(Cell is CellD, k.lnrows + L, B, L, 3 * L, k.dln_w, k.dln_b)
        _deferred_grads(k, iG, True)


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, masks=None, ln=None):
    """-> (h1, cache), cache (B, 4H) = [r | z | n | gh_n]; with layer norm (ln = (gain, shift),
    (4H,) each) cache = (that, lnc) and gh_n is the normalised recurrent part of n."""
    cdef Args k
    cdef int tn = _prep(&k, 3, x, "h", h, None, None, w_ih, w_hh, False)
    _prep_bias(&k, 3 * k.d.H, b_ih, b_hh, tn)
    zero = _prep_ln(&k, tn, ln, 4)
    lnc = _ln_cache_out(&k, tn, 4, False)
    h1 = _empty(tn, k.d.B, k.d.H)
    cache = _empty(tn, k.d.B, 4 * k.d.H)
    kept = _prep_masks(&k, tn, masks, 1, False, False)
    ws = _borrow(tn, 4 * k.d.H + 3 * k.d.B * k.d.H)
    k.hs, k.gates, k.ws = _data(h1), _data(cache), _data(ws)
    _run(&k, tn, _gru_fwd[CellF], _gru_fwd[CellD])
    _give_back(tn, ws)
    return h1, cache if lnc is None else (cache, lnc)


def gru_cell_backward(dh1, x, h, w_ih, w_hh, cache, has_bias, need_dx=True, need_dh=True,
                      masks=None, ln=None):
    """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh when
    need_dh is (its GEMM skipped). With ln: cache = (gates, lnc), and the gain and shift
    gradients follow."""
    cdef Args k
    cdef int tn = _prep(&k, 3, x, "h", h, None, None, w_ih, w_hh, False)
    cdef Py_ssize_t B = k.d.B, H = k.d.H
    cache, dln = _ln_backward(&k, tn, ln, 4, cache, None)
    k.dh_n = _check(dh1, "dh1", tn, "x", 2, B, H)
    k.gates = _check(cache, "cache", tn, "x", 2, B, 4 * H)
    k.hprev = k.h0
    dx, dh, _ = _state_grads(&k, tn, False, need_dx, need_dh, False)
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(&k, tn, 3 * H, has_bias)
    kept = _prep_masks(&k, tn, masks, 1, False, True)
    ws = _borrow(tn, 6 * B * H)
    k.ws = _data(ws)
    _run(&k, tn, _gru_bwd[CellF], _gru_bwd[CellD])
    _give_back(tn, ws)
    return (dx, dh, dw_ih, dw_hh, db_ih, db_hh) + dln[:2]


def gru_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, masks=None, ln=None):
    """-> (ys, h_n, cache), cache = (hs, gates): hs (T+1, B, H), gates (T, B, 4H); with layer
    norm (ln = (gain, shift)) cache = (hs, gates, lnc), lnc (T, B, 4H + 4)."""
    cdef Args k
    cdef int tn = _prep(&k, 3, x, "h0", h0, None, None, w_ih, w_hh, True)
    _prep_bias(&k, 3 * k.d.H, b_ih, b_hh, tn)
    zero = _prep_ln(&k, tn, ln, 4)
    lnc = _ln_cache_out(&k, tn, 4, True)
    L = _prep_lengths(&k, lengths)
    k.hs = k.h0
    pw = _packed_w(&k, tn, ((3 * k.d.H, k.d.H),))
    hs = _seq_states(&k, tn, &k.hs)
    gates = _cache_empty(tn, k.d.T, k.d.B, 4 * k.d.H)
    ys = _outputs(&k, tn, hs)
    kept = _prep_masks(&k, tn, masks, 1, True, False)
    ws = _borrow(tn, 4 * k.d.H + 3 * k.d.B * k.d.H)
    k.gates, k.ws = _data(gates), _data(ws)
    _run(&k, tn, _gru_fwd[CellF], _gru_fwd[CellD])
    _give_back(tn, ws)
    return ys, _last(hs, &k), (hs, gates) + (() if lnc is None else (lnc,))


def gru_sequence_backward(dys, dh_n, x, h0, w_ih, w_hh, cache, lengths, has_bias, need_dx=True,
                          need_dh0=True, masks=None, ln=None, out=None, scale=1.0):
    """-> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh0 when
    need_dh0 is (the last step's GEMMs are skipped).
    dys None: no gradient reaches the outputs (only the final state was used); no step adds one.
    With ln: cache = (hs, gates, lnc), and the gain and shift gradients follow.
    out: None, or (dw_ih, dw_hh, db_ih, db_hh) with entries None or arrays that receive scale
    times that gradient (returned in its place)."""
    cdef Args k
    cdef int tn = _prep(&k, 3, x, "h0", h0, None, None, w_ih, w_hh, True)
    cdef Py_ssize_t T = k.d.T, B = k.d.B, H = k.d.H
    L = _prep_lengths(&k, lengths)
    given = cache
    cache, dln = _ln_backward(&k, tn, ln, 4, cache, "hs, gates")
    k.dys = NULL if dys is None else _check(dys, "dys", tn, "x", 3, T, B, H)
    k.dh_n = _check(dh_n, "dh_n", tn, "x", 2, B, H)
    k.hprev = _check(cache[0], "hs", tn, "x", 3, T + 1, B, H)
    k.gates = _check(cache[1], "gates", tn, "x", 3, T, B, 4 * H)
    kept = _prep_masks(&k, tn, masks, 1, True, True)
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(
        &k, tn, 3 * H, has_bias, out, scale,
        _inputs(dys, dh_n, x, h0, w_ih, w_hh, given, masks, ln))
    pw = _packed_w(&k, tn, ((H, 2 * H), (H, H)))
    dx, dh0, _ = _state_grads(&k, tn, True, need_dx, need_dh0, False)
    ws = _borrow(tn, (4 * T + 2) * B * H)
    k.ws = _data(ws)
    _run(&k, tn, _gru_bwd[CellF], _gru_bwd[CellD])
    _give_back(tn, ws)
    return (dx, dh0, dw_ih, dw_hh, db_ih, db_hh) + dln[:2]
