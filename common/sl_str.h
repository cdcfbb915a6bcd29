/* Small string helpers shared by the layers above. */
#ifndef SL_STR_H
#define SL_STR_H

/* a, b and c joined in a new string (free() it); NULL when out of memory. */
char *sl_strcat3(const char *a, const char *b, const char *c);

#endif
