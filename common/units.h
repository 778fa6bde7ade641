/* Sizes as people write them. */
#ifndef QP_UNITS_H
#define QP_UNITS_H

/* "512M", "4G", "1.5T", "300" (bytes; K, M, G, T are powers of 1024, an
 * optional trailing B is allowed) -> bytes; 0 for ""; -1 if malformed. */
long long qp_parse_size(const char *s);

#endif
