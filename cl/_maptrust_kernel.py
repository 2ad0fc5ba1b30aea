"""The compiled row kernel of :func:`cl.maptrust.map_trust` (numba, imported on first use:
compiling takes a few seconds once, then numba's on-disk cache is read where it is writable)."""

import numba
import numpy as np


def _jit(**options):
    """``numba.njit`` with the on-disk cache, or without it where numba finds no writable folder."""
    def wrap(fn):
        try:
            return numba.njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(cache=False, nogil=True, **options)(fn)
    return wrap


@_jit()
def smallest(d, i, k, out_idx, out_val):
    """The k smallest of row d (skipping i), sorted by (value, index)."""
    m = 0
    for j in range(len(d)):
        if j == i:
            continue
        v = d[j]
        if m == k and v >= out_val[k - 1]:
            continue
        pos = m if m < k else k - 1
        while pos > 0 and out_val[pos - 1] > v:
            out_val[pos] = out_val[pos - 1]
            out_idx[pos] = out_idx[pos - 1]
            pos -= 1
        out_val[pos] = v
        out_idx[pos] = j
        if m < k:
            m += 1


@_jit()
def excess_rank(d, i, k, thresholds, u):
    """Sum over the first u thresholds t of max(0, r - k), r = t's mid-rank in row d
    (1 + points strictly nearer + half the other points at the same distance), point i excluded."""
    t = np.sort(thresholds[:u])
    top = t[u - 1]
    below = np.zeros(u + 1, np.int64)  # below[q]: points with exactly q thresholds <= their value
    below_eq = np.zeros(u + 1, np.int64)  # below_eq[q]: points with exactly q thresholds < their value
    for j in range(len(d)):
        if j == i:
            continue
        v = d[j]
        if v > top:
            continue
        a = u  # thresholds < v
        while a > 0 and t[a - 1] >= v:
            a -= 1
        b = a  # thresholds <= v
        while b < u and t[b] == v:
            b += 1
        below[b] += 1  # v < t[s] for every s >= b
        below_eq[a] += 1  # v <= t[s] for every s >= a
    total = 0.0
    less = 0
    less_eq = 0
    for s in range(u):
        less += below[s]
        less_eq += below_eq[s]
        r = 1.0 + less + (less_eq - less - 1) / 2.0  # less_eq counts the threshold's own point
        if r > k:
            total += r - k
    return total


@_jit(parallel=True)
def rows(block, start, pts, k, nbr_e, nbr_m, kept, t_part, c_part):
    m, n = block.shape
    dim = pts.shape[1]
    for r in numba.prange(m):
        i = start + r
        de = block[r]
        dm = np.empty(n, np.float64)
        for j in range(n):
            acc = 0.0
            for c in range(dim):
                diff = pts[i, c] - pts[j, c]
                acc += diff * diff
            dm[j] = acc
        ie = np.empty(k, np.int64)
        ve = np.empty(k, np.float64)
        im = np.empty(k, np.int64)
        vm = np.empty(k, np.float64)
        smallest(de, i, k, ie, ve)
        smallest(dm, i, k, im, vm)
        th_e = np.empty(k, np.float64)  # map neighbours missing from the true ones: embedding distance
        th_m = np.empty(k, np.float64)  # true neighbours missing from the map's: map distance
        ue = 0
        um = 0
        both = 0
        for a in range(k):
            found = False
            for b in range(k):
                if im[a] == ie[b]:
                    found = True
                    break
            if found:
                both += 1
            else:
                th_e[ue] = de[im[a]]
                ue += 1
            found = False
            for b in range(k):
                if ie[a] == im[b]:
                    found = True
                    break
            if not found:
                th_m[um] = dm[ie[a]]
                um += 1
        kept[r] = both
        t_part[r] = excess_rank(de, i, k, th_e, ue) if ue else 0.0
        c_part[r] = excess_rank(dm, i, k, th_m, um) if um else 0.0
        for a in range(k):
            nbr_e[r, a] = ie[a]
            nbr_m[r, a] = im[a]
