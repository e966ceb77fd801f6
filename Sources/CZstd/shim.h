// Debian's libzstd-dev: ZSTD-compressed Parquet pages.
#include <zstd.h>
