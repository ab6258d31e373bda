// secret_echo.wasm — Wisp test fixture, legacy ABI (plain WASI command).
// Reads the environment variable API_KEY (issue 14: a secret reaches the
// guest as WASI env) and answers, without the value itself, whether it is
// set, its length and its 32-bit FNV-1a hash in hex:
//   {"set":true,"len":N,"fnv1a":"xxxxxxxx"}
// so a test can check the value arrived while no record holds it.

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    const char *v = getenv("API_KEY");
    if (v == NULL) {
        fputs("API_KEY is not set\n", stderr);
        printf("{\"set\":false,\"len\":0,\"fnv1a\":\"\"}\n");
        return 0;
    }
    uint32_t h = 2166136261u;
    size_t n = strlen(v);
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)v[i];
        h *= 16777619u;
    }
    fputs("API_KEY is set\n", stderr);
    printf("{\"set\":true,\"len\":%zu,\"fnv1a\":\"%08x\"}\n", n, (unsigned)h);
    return 0;
}
