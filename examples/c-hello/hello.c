/* A WAGI function in C, built with clang and wasi-libc (see scripts/build-guests.sh).
 *
 * CGI 1.1 over WASI preview 1: the request metadata is in the environment, the body on stdin;
 * the function prints CGI headers, a blank line, then the body. */
#include <stdio.h>
#include <stdlib.h>

static const char *env_or_empty(const char *name) {
    const char *value = getenv(name);
    return value ? value : "";
}

int main(void) {
    char buffer[4096];
    size_t total = 0;
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, stdin)) > 0) {
        total += n;
    }

    printf("Content-Type: text/plain; charset=utf-8\r\n");
    printf("X-Written-In: C\r\n");
    printf("\r\n");
    printf("Hello from C on Kindling!\n");
    printf("method: %s\n", env_or_empty("REQUEST_METHOD"));
    printf("path: %s\n", env_or_empty("PATH_INFO"));
    printf("query: %s\n", env_or_empty("QUERY_STRING"));
    printf("body bytes: %zu\n", total);
    if (getenv("GREETING")) {
        printf("GREETING (set at deploy): %s\n", getenv("GREETING"));
    }
    return 0;
}
