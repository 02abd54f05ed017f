#include <libxml/xmlversion.h>
// NOTE: Debian's libxml2 is built with ICU, and its encoding.h then includes ICU headers whose
// UErrorCode clashes with the copy inside Foundation. PruneCheck uses no ICU-dependent
// libxml2 API (only the text writer and buffers, through opaque pointers), so hide it.
#undef LIBXML_ICU_ENABLED
#include <libxml/xmlwriter.h>
#include <libxml/parser.h>
