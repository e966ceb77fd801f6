// Debian's libopenblas-dev installs cblas.h under the multiarch include path,
// which the C compiler searches by default.
#include <cblas.h>
