// exit_c.wasm — Wisp test fixture, legacy ABI (plain WASI command).
// Writes "boom: bad input" (no newline) to stderr and exits with status 3.

#include <unistd.h>

int main(void) {
    static const char msg[] = "boom: bad input";
    (void)write(2, msg, sizeof msg - 1);
    return 3;
}
