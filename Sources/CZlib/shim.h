// Debian's zlib1g-dev: gzip-compressed datasets (gzread also reads plain files).
#include <zlib.h>
