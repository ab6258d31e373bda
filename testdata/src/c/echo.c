// echo_c.wasm — Wisp test fixture, legacy ABI (plain WASI command).
// Copies all of stdin to stdout unchanged.

#include <errno.h>
#include <unistd.h>

static char buf[16384];

int main(void) {
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(1, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR) continue;
                return 1;
            }
            off += w;
        }
    }
}
