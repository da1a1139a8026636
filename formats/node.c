/* luks-nbd: node helpers shared by all node types. */
#include <config.h>

#include <stdlib.h>

#include "node.h"

void
node_close (struct node *n)
{
  if (n)
    n->ops->close (n);
}
