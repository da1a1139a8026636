/* luks-nbd: entry point (placeholder until the server lands). */
#include <config.h>

#include <stdio.h>
#include <string.h>

int
main (int argc, char **argv)
{
  if (argc > 1 && strcmp (argv[1], "--version") == 0) {
    printf ("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
    return 0;
  }
  fprintf (stderr, "usage: luks-nbd --export name=NAME,payload=PATH,...\n");
  return 1;
}
