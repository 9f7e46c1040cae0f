/* `genie classifier train|valid|predict ...` */
#ifndef GENIE_CLASSIFIER_H
#define GENIE_CLASSIFIER_H
/* argv[0] is the subcommand. Returns 0, or -1 with err_msg(). */
int classifier_main(int argc, char **argv);
/* The signal (SIGINT, SIGTERM) that stopped a training run early, or 0: the process exits with 128 + it. */
int classifier_signal(void);
#endif
