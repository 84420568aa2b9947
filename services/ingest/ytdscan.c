/* The fast path of services/ingest/ytd.py in C: canonical follower/following records.
 *
 * X pretty-prints every record as  P <id> Q <id> R  where P, Q and R are fixed for a kind and a
 * line ending (see Shape in fastpath.py) and both ids are the same decimal string. This reads such
 * records from the start of `buf` until the first byte that differs from that shape, writing
 * each id to `out`; whatever stops it is left to the Python slow path, which parses it as JSON
 * and says precisely what is wrong. Plain C (no Python API), loaded with ctypes.
 *
 * Returns the number of bytes consumed (the end of the last whole record read); `*count` gets
 * the number of ids written (at most `cap`).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static const char MAX_ID[] = "9223372036854775807"; /* 2**63 - 1, 19 digits */

long hqx_scan_records(const unsigned char *buf, long len,
                      const unsigned char *p, long np,
                      const unsigned char *q, long nq,
                      const unsigned char *r, long nr,
                      int64_t *out, long cap, long *count)
{
    long i = 0, done = 0, n = 0;
    while (n < cap) {
        if (len - i < np || memcmp(buf + i, p, (size_t)np) != 0)
            break;
        i += np;
        long a = i;
        uint64_t v = 0;
        while (i < len && i - a < 20 && buf[i] >= '0' && buf[i] <= '9')
            v = v * 10 + (uint64_t)(buf[i++] - '0');
        long digits = i - a;
        if (digits == 0 || digits > 19 || buf[a] == '0')
            break;
        if (digits == 19 && memcmp(buf + a, MAX_ID, 19) > 0)
            break;
        if (len - i < nq + digits + nr || memcmp(buf + i, q, (size_t)nq) != 0)
            break;
        i += nq;
        if (memcmp(buf + i, buf + a, (size_t)digits) != 0)
            break;
        i += digits;
        if (memcmp(buf + i, r, (size_t)nr) != 0)
            break;
        i += nr;
        out[n++] = (int64_t)v;
        done = i;
    }
    *count = n;
    return done;
}
