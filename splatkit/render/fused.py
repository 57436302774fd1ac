"""Projection and SH colour in one numba pass per splat, forward and backward.

The maths is exactly that of :mod:`.projection` (EWA projection, gsplat's clamps, culling and
opacity-aware radii) and :mod:`.sh` (gsplat's real SH basis, ``clamp_min(eval + 0.5, 0)``),
which stay the pure-PyTorch twin and test oracle. Per splat the forward kernel goes from the raw
parameters (means, log-scales, quaternions, opacity logits, SH coefficients) to what the
rasterizer reads (means2d, conics, colours, opacities, depths, radii); the backward kernel
recomputes those intermediates and applies the chain rule by hand, in the order autograd
would. Arithmetic is float64 inside (the inputs and outputs are float32); splats are
independent, so results do not depend on the thread count.

Replaces about 100 small torch ops (and their autograd graph) per training step.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from . import ALPHA_THRESHOLD
from .projection import MAX_EXTENT
from .sh import SH_C0, SH_C1, SH_C2, SH_C3

_NORM_EPS = 1e-12  # F.normalize's eps
#: Splats per parallel task: the per-splat code is inlined into a plain loop over a chunk (a
#: call per splat with ~20 array arguments cost more than the maths).
_CHUNK = 256


# ----------------------------------------------------------------------------- 3x3 helpers
# Matrices are row-major 9-tuples.


@njit(cache=True, inline="always")
def _rotmat(w, x, y, z):
    return (
        1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y),
        2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x),
        2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y),
    )  # fmt: skip


@njit(cache=True, inline="always")
def _mm(a, b):
    """a @ b."""
    return (
        a[0] * b[0] + a[1] * b[3] + a[2] * b[6], a[0] * b[1] + a[1] * b[4] + a[2] * b[7],
        a[0] * b[2] + a[1] * b[5] + a[2] * b[8],
        a[3] * b[0] + a[4] * b[3] + a[5] * b[6], a[3] * b[1] + a[4] * b[4] + a[5] * b[7],
        a[3] * b[2] + a[4] * b[5] + a[5] * b[8],
        a[6] * b[0] + a[7] * b[3] + a[8] * b[6], a[6] * b[1] + a[7] * b[4] + a[8] * b[7],
        a[6] * b[2] + a[7] * b[5] + a[8] * b[8],
    )  # fmt: skip


@njit(cache=True, inline="always")
def _t(a):
    return (a[0], a[3], a[6], a[1], a[4], a[7], a[2], a[5], a[8])


@njit(cache=True, inline="always")
def _splat_cov(quats, log_scales, g):
    """Normalised quaternion, its norm, rotation R, scales s, ``M = R diag(s)`` and ``M M^T``."""
    w = np.float64(quats[g, 0])
    x = np.float64(quats[g, 1])
    y = np.float64(quats[g, 2])
    z = np.float64(quats[g, 3])
    nq = math.sqrt(w * w + x * x + y * y + z * z)
    inv = 1.0 / max(nq, _NORM_EPS)
    q = (w * inv, x * inv, y * inv, z * inv)
    R = _rotmat(q[0], q[1], q[2], q[3])
    s = (math.exp(log_scales[g, 0]), math.exp(log_scales[g, 1]), math.exp(log_scales[g, 2]))
    M = (R[0] * s[0], R[1] * s[1], R[2] * s[2], R[3] * s[0], R[4] * s[1], R[5] * s[2],
         R[6] * s[0], R[7] * s[1], R[8] * s[2])  # fmt: skip
    return q, nq, R, s, M, _mm(M, _t(M))


# ----------------------------------------------------------------------------- SH


@njit(cache=True, inline="always")
def _sh_basis(x, y, z):
    """The 16 basis values at the unit direction (x, y, z) (callers use the first (d + 1)^2)."""
    xx, yy, zz = x * x, y * y, z * z
    return (
        SH_C0, -SH_C1 * y, SH_C1 * z, -SH_C1 * x,
        SH_C2[0] * (x * y), SH_C2[1] * (y * z), SH_C2[2] * (2.0 * zz - xx - yy),
        SH_C2[3] * (x * z), SH_C2[4] * (xx - yy),
        SH_C3[0] * y * (3.0 * xx - yy), SH_C3[1] * (x * y) * z,
        SH_C3[2] * y * (4.0 * zz - xx - yy), SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
        SH_C3[4] * x * (4.0 * zz - xx - yy), SH_C3[5] * z * (xx - yy),
        SH_C3[6] * x * (xx - 3.0 * yy),
    )  # fmt: skip


@njit(cache=True, inline="always")
def _sh_dir_grad(degree, x, y, z, v):
    """``sum_k v[k] * d basis_k / d (x, y, z)`` for the per-basis weights ``v`` (16)."""
    gx = gy = gz = 0.0
    if degree >= 1:
        gy -= SH_C1 * v[1]
        gz += SH_C1 * v[2]
        gx -= SH_C1 * v[3]
    if degree >= 2:
        c = SH_C2
        gx += c[0] * y * v[4] - 2.0 * c[2] * x * v[6] + c[3] * z * v[7] + 2.0 * c[4] * x * v[8]
        gy += c[0] * x * v[4] + c[1] * z * v[5] - 2.0 * c[2] * y * v[6] - 2.0 * c[4] * y * v[8]
        gz += c[1] * y * v[5] + 4.0 * c[2] * z * v[6] + c[3] * x * v[7]
    if degree >= 3:
        c = SH_C3
        xx, yy, zz = x * x, y * y, z * z
        gx += (c[0] * 6.0 * x * y * v[9] + c[1] * y * z * v[10] - 2.0 * c[2] * x * y * v[11]
               - 6.0 * c[3] * x * z * v[12] + c[4] * (4.0 * zz - 3.0 * xx - yy) * v[13]
               + 2.0 * c[5] * x * z * v[14] + c[6] * (3.0 * xx - 3.0 * yy) * v[15])  # fmt: skip
        gy += (c[0] * (3.0 * xx - 3.0 * yy) * v[9] + c[1] * x * z * v[10]
               + c[2] * (4.0 * zz - xx - 3.0 * yy) * v[11] - 6.0 * c[3] * y * z * v[12]
               - 2.0 * c[4] * x * y * v[13] - 2.0 * c[5] * y * z * v[14]
               - 6.0 * c[6] * x * y * v[15])  # fmt: skip
        gz += (c[1] * x * y * v[10] + 8.0 * c[2] * y * z * v[11]
               + c[3] * (6.0 * zz - 3.0 * xx - 3.0 * yy) * v[12] + 8.0 * c[4] * x * z * v[13]
               + c[5] * (xx - yy) * v[14])  # fmt: skip
    return gx, gy, gz


@njit(cache=True, inline="always")
def _unit(dx, dy, dz):
    n = math.sqrt(dx * dx + dy * dy + dz * dz)
    inv = 1.0 / max(n, _NORM_EPS)
    return dx * inv, dy * inv, dz * inv, n


# ----------------------------------------------------------------------------- camera


@njit(cache=True, inline="always")
def _camera(means, cov, g, cam):
    """Camera-space mean and covariance. ``cam``: R (9), t (3), fx, fy, cx, cy, lims (4)."""
    Rw = (cam[0], cam[1], cam[2], cam[3], cam[4], cam[5], cam[6], cam[7], cam[8])
    mx = np.float64(means[g, 0])
    my = np.float64(means[g, 1])
    mz = np.float64(means[g, 2])
    px = Rw[0] * mx + Rw[1] * my + Rw[2] * mz + cam[9]
    py = Rw[3] * mx + Rw[4] * my + Rw[5] * mz + cam[10]
    pz = Rw[6] * mx + Rw[7] * my + Rw[8] * mz + cam[11]
    return Rw, px, py, pz, _mm(_mm(Rw, cov), _t(Rw))


@njit(cache=True, inline="always")
def _jacobian(px, py, pz, cam):
    fx, fy = cam[12], cam[13]
    rz = 1.0 / pz
    u = px * rz
    v = py * rz
    uc = min(cam[16], max(-cam[17], u))
    vc = min(cam[18], max(-cam[19], v))
    tx = pz * uc
    ty = pz * vc
    return rz, u, v, uc, vc, tx, ty, fx * rz, -fx * tx * rz * rz, fy * rz, -fy * ty * rz * rz


@njit(cache=True, inline="always")
def _cov2d(S, J00, J02, J11, J12):
    """``J S J^T`` with ``J = [[J00, 0, J02], [0, J11, J12]]``; S symmetric."""
    c00 = J00 * J00 * S[0] + 2.0 * J00 * J02 * S[2] + J02 * J02 * S[8]
    c01 = J00 * J11 * S[1] + J00 * J12 * S[2] + J02 * J11 * S[5] + J02 * J12 * S[8]
    c11 = J11 * J11 * S[4] + 2.0 * J11 * J12 * S[5] + J12 * J12 * S[8]
    return c00, c01, c11


# ----------------------------------------------------------------------------- kernels


@njit(parallel=True, cache=True)
def _forward(means, log_scales, quats, logits, sh0, shN, degree, cam, width, height, eps2d,
             near, far, antialiased, means2d, conics, colors, opac, depths, radii):  # fmt: skip
    n = means.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _forward_chunk(c * _CHUNK, min(n, (c + 1) * _CHUNK), means, log_scales, quats, logits,
                       sh0, shN, degree, cam, width, height, eps2d, near, far, antialiased,
                       means2d, conics, colors, opac, depths, radii)  # fmt: skip


@njit(cache=True)
def _forward_chunk(g0, g1, means, log_scales, quats, logits, sh0, shN, degree, cam, width,
                   height, eps2d, near, far, antialiased, means2d, conics, colors, opac, depths,
                   radii):  # fmt: skip
    for g in range(g0, g1):
        _forward_splat(g, means, log_scales, quats, logits, sh0, shN, degree, cam, width, height,
                       eps2d, near, far, antialiased, means2d, conics, colors, opac, depths,
                       radii)  # fmt: skip


@njit(cache=True, inline="always")
def _forward_splat(g, means, log_scales, quats, logits, sh0, shN, degree, cam, width, height,
                   eps2d, near, far, antialiased, means2d, conics, colors, opac, depths,
                   radii):  # fmt: skip
    _, _, _, _, _, cov = _splat_cov(quats, log_scales, g)
    Rw, px, py, pz, S = _camera(means, cov, g, cam)
    depths[g] = pz
    sig = 1.0 / (1.0 + math.exp(-np.float64(logits[g])))
    ok = pz >= near and pz <= far
    rz, u, v, _, _, _, _, J00, J02, J11, J12 = _jacobian(px, py, pz if ok else 1.0, cam)
    c00, c01, c11 = _cov2d(S, J00, J02, J11, J12)
    a = c00 + eps2d
    c = c11 + eps2d
    det = a * c - c01 * c01
    ok = ok and det > 0.0
    comp = 1.0
    if antialiased:
        comp = math.sqrt(max((c00 * c11 - c01 * c01) / (det if det > 0.0 else 1.0), 0.0))
    op = sig * comp
    opac[g] = op
    ok = ok and op >= ALPHA_THRESHOLD
    extend = min(math.sqrt(2.0 * math.log(max(op / ALPHA_THRESHOLD, 1.0))), MAX_EXTENT)
    rx = math.ceil(extend * math.sqrt(max(a, 0.0)))
    ry = math.ceil(extend * math.sqrt(max(c, 0.0)))
    m0 = cam[12] * u + cam[14]
    m1 = cam[13] * v + cam[15]
    ok = ok and (rx > 0.0 or ry > 0.0)
    ok = ok and m0 + rx > 0.0 and m0 - rx < width and m1 + ry > 0.0 and m1 - ry < height
    if not ok:
        means2d[g, 0] = means2d[g, 1] = 0.0
        conics[g, 0] = conics[g, 1] = conics[g, 2] = 0.0
        colors[g, 0] = colors[g, 1] = colors[g, 2] = 0.0
        radii[g, 0] = radii[g, 1] = 0
        return
    means2d[g, 0] = m0
    means2d[g, 1] = m1
    conics[g, 0] = c / det
    conics[g, 1] = -c01 / det
    conics[g, 2] = a / det
    radii[g, 0] = np.int32(rx)
    radii[g, 1] = np.int32(ry)
    dx, dy, dz, _ = _unit(means[g, 0] - cam[20], means[g, 1] - cam[21], means[g, 2] - cam[22])
    b = _sh_basis(dx, dy, dz)
    for ch in range(3):
        colors[g, ch] = max(_sh_eval(b, sh0, shN, g, degree, ch) + 0.5, 0.0)


@njit(cache=True, inline="always")
def _w(shN, g, k, nb, vr0, vr1, vr2):
    """Weight of basis ``k`` in the colour gradient: ``sum_c v_c * coeff[k, c]``."""
    if k >= nb:
        return 0.0
    return vr0 * shN[g, k - 1, 0] + vr1 * shN[g, k - 1, 1] + vr2 * shN[g, k - 1, 2]


@njit(cache=True, inline="always")
def _quat_grad(q, nq, G):
    """Gradient w.r.t. the raw quaternion from ``G = dL/dR`` (through the normalisation)."""
    w, x, y, z = q
    vw = 2.0 * (-z * G[1] + y * G[2] + z * G[3] - x * G[5] - y * G[6] + x * G[7])
    vx = 2.0 * (y * G[1] + z * G[2] + y * G[3] - 2.0 * x * G[4] - w * G[5] + z * G[6]
                + w * G[7] - 2.0 * x * G[8])  # fmt: skip
    vy = 2.0 * (-2.0 * y * G[0] + x * G[1] + w * G[2] + x * G[3] + z * G[5] - w * G[6]
                + z * G[7] - 2.0 * y * G[8])  # fmt: skip
    vz = 2.0 * (-2.0 * z * G[0] - w * G[1] + x * G[2] + w * G[3] - 2.0 * z * G[4] + y * G[5]
                + x * G[6] + y * G[7])  # fmt: skip
    if nq < _NORM_EPS:
        return vw / _NORM_EPS, vx / _NORM_EPS, vy / _NORM_EPS, vz / _NORM_EPS
    dot = w * vw + x * vx + y * vy + z * vz
    inv = 1.0 / nq
    return (vw - w * dot) * inv, (vx - x * dot) * inv, (vy - y * dot) * inv, (vz - z * dot) * inv


@njit(cache=True, inline="always")
def _conic_grad(g, c00, c01, c11, eps2d, antialiased, sig, v_con, v_op):
    """``dL/d cov2d`` (V00, V01, V11; V01 is each off-diagonal entry's share) and the opacity
    logit's gradient, through the conic inverse and the antialiasing compensation."""
    a = c00 + eps2d
    c = c11 + eps2d
    det = a * c - c01 * c01
    idet = 1.0 / det
    vA = np.float64(v_con[g, 0])
    vB = np.float64(v_con[g, 1])
    vC = np.float64(v_con[g, 2])
    vop = np.float64(v_op[g])
    v_a = vC * idet
    v_b = -vB * idet
    v_c = vA * idet
    v_det = -(vA * c - vB * c01 + vC * a) * idet * idet
    v00 = v11 = 0.0
    comp = 1.0
    if antialiased:
        do = c00 * c11 - c01 * c01
        r = do * idet
        comp = math.sqrt(max(r, 0.0))
        if r >= 0.0 and comp > 0.0:
            v_do = vop * sig * 0.5 / comp * idet
            v_det -= vop * sig * 0.5 / comp * do * idet * idet
            v00 = v_do * c11
            v11 = v_do * c00
            v_b -= 2.0 * c01 * v_do
    v_a += v_det * c
    v_c += v_det * a
    v_b -= 2.0 * c01 * v_det
    return v_a + v00, 0.5 * v_b, v_c + v11, vop * comp * sig * (1.0 - sig)


@njit(cache=True, inline="always")
def _sh_eval(b, sh0, shN, g, degree, ch):
    """Channel ``ch`` of ``sum_k b[k] coeff[k]`` over the first ``(degree + 1)^2`` bases."""
    acc = b[0] * sh0[g, 0, ch]
    if degree >= 1:
        acc += b[1] * shN[g, 0, ch] + b[2] * shN[g, 1, ch] + b[3] * shN[g, 2, ch]
    if degree >= 2:
        acc += (b[4] * shN[g, 3, ch] + b[5] * shN[g, 4, ch] + b[6] * shN[g, 5, ch]
                + b[7] * shN[g, 6, ch] + b[8] * shN[g, 7, ch])  # fmt: skip
    if degree >= 3:
        acc += (b[9] * shN[g, 8, ch] + b[10] * shN[g, 9, ch] + b[11] * shN[g, 10, ch]
                + b[12] * shN[g, 11, ch] + b[13] * shN[g, 12, ch] + b[14] * shN[g, 13, ch]
                + b[15] * shN[g, 14, ch])  # fmt: skip
    return acc


@njit(cache=True, inline="always")
def _colour_channel_grad(b, sh0, shN, g, degree, ch, v_col, g_sh0, g_shN):
    """Writes channel ``ch``'s coefficient gradients; returns the gradient at the raw value."""
    vr = np.float64(v_col[g, ch]) if _sh_eval(b, sh0, shN, g, degree, ch) + 0.5 >= 0.0 else 0.0
    g_sh0[g, 0, ch] = b[0] * vr
    nb = (degree + 1) * (degree + 1)
    for k in range(nb - 1, shN.shape[1]):
        g_shN[g, k, ch] = 0.0
    for k in range(1, nb):
        g_shN[g, k - 1, ch] = b[k] * vr
    return vr


@njit(cache=True, inline="always")
def _colour_grad(means, sh0, shN, degree, cam, g, v_col, g_sh0, g_shN):
    """Writes the SH coefficients' gradients; returns the means' gradient through the
    view direction."""
    dx, dy, dz, n = _unit(means[g, 0] - cam[20], means[g, 1] - cam[21], means[g, 2] - cam[22])
    b = _sh_basis(dx, dy, dz)
    nb = (degree + 1) * (degree + 1)
    r0 = _colour_channel_grad(b, sh0, shN, g, degree, 0, v_col, g_sh0, g_shN)
    r1 = _colour_channel_grad(b, sh0, shN, g, degree, 1, v_col, g_sh0, g_shN)
    r2 = _colour_channel_grad(b, sh0, shN, g, degree, 2, v_col, g_sh0, g_shN)
    w = (0.0, _w(shN, g, 1, nb, r0, r1, r2), _w(shN, g, 2, nb, r0, r1, r2),
         _w(shN, g, 3, nb, r0, r1, r2), _w(shN, g, 4, nb, r0, r1, r2),
         _w(shN, g, 5, nb, r0, r1, r2), _w(shN, g, 6, nb, r0, r1, r2),
         _w(shN, g, 7, nb, r0, r1, r2), _w(shN, g, 8, nb, r0, r1, r2),
         _w(shN, g, 9, nb, r0, r1, r2), _w(shN, g, 10, nb, r0, r1, r2),
         _w(shN, g, 11, nb, r0, r1, r2), _w(shN, g, 12, nb, r0, r1, r2),
         _w(shN, g, 13, nb, r0, r1, r2), _w(shN, g, 14, nb, r0, r1, r2),
         _w(shN, g, 15, nb, r0, r1, r2))  # fmt: skip
    gx, gy, gz = _sh_dir_grad(degree, dx, dy, dz, w)
    if n < _NORM_EPS:
        return gx / _NORM_EPS, gy / _NORM_EPS, gz / _NORM_EPS
    dot = dx * gx + dy * gy + dz * gz
    inv = 1.0 / n
    return (gx - dx * dot) * inv, (gy - dy * dot) * inv, (gz - dz * dot) * inv


@njit(parallel=True, cache=True)
def _backward(means, log_scales, quats, logits, sh0, shN, degree, cam, eps2d, antialiased,
              radii, v_m2d, v_con, v_col, v_op,
              g_means, g_ls, g_quats, g_logits, g_sh0, g_shN):  # fmt: skip
    n = means.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _backward_chunk(c * _CHUNK, min(n, (c + 1) * _CHUNK), means, log_scales, quats, logits,
                        sh0, shN, degree, cam, eps2d, antialiased, radii, v_m2d, v_con, v_col,
                        v_op, g_means, g_ls, g_quats, g_logits, g_sh0, g_shN)  # fmt: skip


@njit(cache=True)
def _backward_chunk(g0, g1, means, log_scales, quats, logits, sh0, shN, degree, cam, eps2d,
                    antialiased, radii, v_m2d, v_con, v_col, v_op, g_means, g_ls, g_quats,
                    g_logits, g_sh0, g_shN):  # fmt: skip
    for g in range(g0, g1):
        _backward_splat(g, means, log_scales, quats, logits, sh0, shN, degree, cam, eps2d,
                        antialiased, radii, v_m2d, v_con, v_col, v_op, g_means, g_ls, g_quats,
                        g_logits, g_sh0, g_shN)  # fmt: skip


@njit(cache=True, inline="always")
def _backward_splat(g, means, log_scales, quats, logits, sh0, shN, degree, cam, eps2d,
                    antialiased, radii, v_m2d, v_con, v_col, v_op, g_means, g_ls, g_quats,
                    g_logits, g_sh0, g_shN):  # fmt: skip
    if radii[g, 0] <= 0 and radii[g, 1] <= 0:  # culled: no gradient reaches it
        for i in range(3):
            g_means[g, i] = g_ls[g, i] = g_sh0[g, 0, i] = 0.0
            for k in range(shN.shape[1]):
                g_shN[g, k, i] = 0.0
        g_quats[g, 0] = g_quats[g, 1] = g_quats[g, 2] = g_quats[g, 3] = 0.0
        g_logits[g] = 0.0
        return
    q, nq, R, s, M, cov = _splat_cov(quats, log_scales, g)
    Rw, px, py, pz, S = _camera(means, cov, g, cam)
    rz, u, v, uc, vc, tx, ty, J00, J02, J11, J12 = _jacobian(px, py, pz, cam)
    c00, c01, c11 = _cov2d(S, J00, J02, J11, J12)
    sig = 1.0 / (1.0 + math.exp(-np.float64(logits[g])))
    V00, V01, V11, g_logits[g] = _conic_grad(g, c00, c01, c11, eps2d, antialiased, sig,
                                             v_con, v_op)  # fmt: skip
    # cov2d = J S J^T: dJ = 2 V J S, dS = J^T V J.
    a0, a1, a2 = J00 * S[0] + J02 * S[6], J00 * S[1] + J02 * S[7], J00 * S[2] + J02 * S[8]
    b0, b1, b2 = J11 * S[3] + J12 * S[6], J11 * S[4] + J12 * S[7], J11 * S[5] + J12 * S[8]
    vJ00 = 2.0 * (V00 * a0 + V01 * b0)
    vJ02 = 2.0 * (V00 * a2 + V01 * b2)
    vJ11 = 2.0 * (V01 * a1 + V11 * b1)
    vJ12 = 2.0 * (V01 * a2 + V11 * b2)
    w0 = (V00 * J00, V01 * J11, V00 * J02 + V01 * J12)  # row 0 of V J
    w1 = (V01 * J00, V11 * J11, V01 * J02 + V11 * J12)  # row 1 of V J
    vS = (J00 * w0[0], J00 * w0[1], J00 * w0[2],
          J11 * w1[0], J11 * w1[1], J11 * w1[2],
          J02 * w0[0] + J12 * w1[0], J02 * w0[1] + J12 * w1[1], J02 * w0[2] + J12 * w1[2])  # fmt: skip
    # J and means2d -> camera-space mean.
    fx, fy = cam[12], cam[13]
    v_rz = fx * vJ00 + fy * vJ11 - 2.0 * fx * tx * rz * vJ02 - 2.0 * fy * ty * rz * vJ12
    v_tx = -fx * rz * rz * vJ02
    v_ty = -fy * rz * rz * vJ12
    v_u = fx * np.float64(v_m2d[g, 0])
    v_v = fy * np.float64(v_m2d[g, 1])
    v_pz = v_tx * uc + v_ty * vc
    if -cam[17] < u < cam[16]:
        v_u += v_tx * pz
    if -cam[19] < v < cam[18]:
        v_v += v_ty * pz
    v_px = v_u * rz
    v_py = v_v * rz
    v_pz -= (v_rz + v_u * px + v_v * py) * rz * rz
    # World mean (projection and view direction), then the 3D covariance.
    cx, cy, cz = _colour_grad(means, sh0, shN, degree, cam, g, v_col, g_sh0, g_shN)
    g_means[g, 0] = Rw[0] * v_px + Rw[3] * v_py + Rw[6] * v_pz + cx
    g_means[g, 1] = Rw[1] * v_px + Rw[4] * v_py + Rw[7] * v_pz + cy
    g_means[g, 2] = Rw[2] * v_px + Rw[5] * v_py + Rw[8] * v_pz + cz
    vC = _mm(_mm(_t(Rw), vS), Rw)
    vM = _mm(vC, M)
    for j in range(3):
        vs = 2.0 * (vM[j] * R[j] + vM[3 + j] * R[3 + j] + vM[6 + j] * R[6 + j])
        g_ls[g, j] = vs * s[j]
    G = (2.0 * vM[0] * s[0], 2.0 * vM[1] * s[1], 2.0 * vM[2] * s[2],
         2.0 * vM[3] * s[0], 2.0 * vM[4] * s[1], 2.0 * vM[5] * s[2],
         2.0 * vM[6] * s[0], 2.0 * vM[7] * s[1], 2.0 * vM[8] * s[2])  # fmt: skip
    g_quats[g, 0], g_quats[g, 1], g_quats[g, 2], g_quats[g, 3] = _quat_grad(q, nq, G)


# ----------------------------------------------------------------------------- autograd


def camera_vector(world_to_cam: Tensor, K: Tensor, width: int, height: int) -> np.ndarray:
    """The kernels' camera: R (9), t (3), fx, fy, cx, cy, the Jacobian's clamps on x/z
    (+, -) and y/z (+, -), and the camera centre (3); float64."""
    w2c = world_to_cam.detach().double().cpu()
    k = K.detach().double().cpu()
    fx, fy, cx, cy = float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    R, t = w2c[:3, :3], w2c[:3, 3]
    lims = [(width - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x,
            (height - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y]  # fmt: skip
    centre = -(R.T @ t)
    return np.concatenate([R.reshape(-1).numpy(), t.numpy(), [fx, fy, cx, cy], lims,
                           centre.numpy()]).astype(np.float64)  # fmt: skip


def _np(x: Tensor) -> np.ndarray:
    return x.detach().contiguous().numpy()


class _ProjectSH(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, log_scales, quats, logits, sh0, shN, cam, degree, width, height,
                eps2d, near, far, antialiased):  # fmt: skip
        n = means.shape[0]
        ins = tuple(_np(x) for x in (means, log_scales, quats, logits, sh0, shN))
        means2d = np.empty((n, 2), np.float32)
        conics = np.empty((n, 3), np.float32)
        colors = np.empty((n, 3), np.float32)
        opac = np.empty(n, np.float32)
        depths = np.empty(n, np.float32)
        radii = np.empty((n, 2), np.int32)
        _forward(*ins, degree, cam, width, height, eps2d, near, far, antialiased,
                 means2d, conics, colors, opac, depths, radii)  # fmt: skip
        ctx.ins, ctx.radii = ins, radii
        ctx.args = (degree, cam, eps2d, antialiased)
        out = [torch.from_numpy(x) for x in (means2d, conics, colors, opac, depths, radii)]
        ctx.mark_non_differentiable(out[4], out[5])
        return tuple(out)

    @staticmethod
    def backward(ctx, v_m2d, v_con, v_col, v_op, _v_depths, _v_radii):
        means, log_scales, quats, logits, sh0, shN = ctx.ins
        degree, cam, eps2d, antialiased = ctx.args
        n = means.shape[0]
        grads = [np.empty_like(x) for x in ctx.ins]
        vs = []
        for v, shape in ((v_m2d, (n, 2)), (v_con, (n, 3)), (v_col, (n, 3)), (v_op, (n,))):
            vs.append(np.zeros(shape, np.float32) if v is None else _np(v.float()))
        _backward(*ctx.ins, degree, cam, eps2d, antialiased, ctx.radii, *vs, *grads)
        return (*(torch.from_numpy(x) for x in grads), None, None, None, None, None, None, None,
                None)  # fmt: skip


def project_and_shade(splats, view, settings, degree: int):
    """Fused projection + SH colour of float32 splats.

    Returns ``(means2d [N, 2], conics [N, 3], colors [N, 3], opacities [N], depths [N],
    radii [N, 2] int32)``, differentiable in every splat tensor; what
    :func:`.projection.project_splats` and :func:`.sh.sh_to_color` give (opacities with the
    antialiasing compensation applied; colours and conics 0 where culled).
    """
    cam = camera_vector(view.world_to_cam, view.K, view.width, view.height)
    return _ProjectSH.apply(
        splats.means, splats.log_scales, splats.quats, splats.opacity_logits, splats.sh0,
        splats.shN, cam, int(degree), int(view.width), int(view.height), float(settings.eps2d),
        float(settings.near_plane), float(settings.far_plane), bool(settings.antialiased),
    )  # fmt: skip
