/* Networks in and out of files, with the checks libdarknet does not make: it exit()s on a missing file and
 * silently loads a truncated or mismatched .weights file. */
#ifndef GENIE_NETIO_H
#define GENIE_NETIO_H
#include <darknet.h>

#include "src/net/transform.h"

/* The [net] keys libdarknet does not keep in its network struct (AlexeyAB's names), plus genie's own. */
typedef struct {
    int flip, mixup, cutmix;
    float label_smooth;
    float crop_scale;           /* crop_scale=: weak/strong's smallest crop area (torchvision's scale[0], 0.2) */
    enum aug_preset preset;     /* augment=darknet|weak|strong */
    int gen_preset;             /* gen_augment=: generated samples' preset (an aug_preset); -1: as augment= */
    int tail_preset;            /* tail_augment=: real images in the tail rows (tail_share); -1: as augment= */
} net_extras;

/* Where darknet builds the networks parsed from now on (libdarknet's gpu_index): want = a CUDA device, -1 the CPU,
 * or NETIO_DEVICE_DEFAULT: the first device in a GPU build (the CPU, with one line on stderr, when there is none),
 * the CPU in a CPU build. Returns the device, -1 for the CPU, or -2 + err_msg() (no such device, or a device asked
 * of a build without CUDA). */
#define NETIO_DEVICE_DEFAULT (-3)
int netio_device(int want);
/* Parses cfg (checked first by cfgcheck: every section, key, value and layer shape), loads weights when given
 * (header and size checked against what the network needs), zeroes the seen counter on clear. NULL with err_msg()
 * on any problem. */
network *netio_load(const char *cfg, const char *weights, int clear, net_extras *extras);
/* save_weights through a temporary file and a rename: an interrupted save never leaves a half file. */
int netio_save(network *net, const char *path);
/* The augmentation parameters the network's [net] section asks for: real images, and (differing only in the
 * preset) generated samples with gen_augment= and the tail rows' real images with tail_augment=. */
aug_params netio_aug_params(const network *net, const net_extras *ex);
aug_params netio_gen_aug_params(const network *net, const net_extras *ex);
aug_params netio_tail_aug_params(const network *net, const net_extras *ex);

#endif
