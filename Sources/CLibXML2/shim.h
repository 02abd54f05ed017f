#include <libxml/xmlwriter.h>
#include <libxml/xmlversion.h>
#include <libxml/parser.h>
