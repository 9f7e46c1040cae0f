/* common/util's whole-file writes against what is on the disk: a symlink is followed (the link stays, its file is
 * replaced), a device, FIFO, directory or dangling link is refused and left as it was, a missing directory is
 * named before anything is made; then the same through the binary (txt2img -o). */
#include "tests/check.h"
#include "common/err.h"
#include "common/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static char dir[256];

static void read_text(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    size_t k = f ? fread(buf, 1, n - 1, f) : 0;
    buf[k] = 0;
    if (f) fclose(f);
}

static int leftovers(void)   /* temporary files left in dir */
{
    char cmd[512], out[256];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '\\.tmp$'", dir);
    check_sh(cmd, out, sizeof out);
    return atoi(out);
}

static void symlinks(void)
{
    char target[300], link[300], buf[64];
    struct stat st;
    snprintf(target, sizeof target, "%s/real.txt", dir);
    snprintf(link, sizeof link, "%s/link.txt", dir);
    CHECK(util_write_text(target, "first") == 0, "%s", err_msg());
    CHECK(util_write_text(target, "old") == 0, "over a regular file: %s", err_msg());
    read_text(target, buf, sizeof buf);
    CHECK(strcmp(buf, "old") == 0, "a regular file is replaced: '%s'", buf);
    CHECK(symlink("real.txt", link) == 0, "symlink");
    CHECK(util_write_text(link, "new") == 0, "through the link: %s", err_msg());
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode), "the link is still a link");
    read_text(target, buf, sizeof buf);
    CHECK(strcmp(buf, "new") == 0, "its file was replaced: '%s'", buf);

    char dangling[300];
    snprintf(dangling, sizeof dangling, "%s/dangling.txt", dir);
    CHECK(symlink("nowhere/x.txt", dangling) == 0, "symlink");
    CHECK(util_write_text(dangling, "x") == -1 && strstr(err_msg(), "dangling.txt: a symbolic link to nothing"), "%s",
          err_msg());
    CHECK(lstat(dangling, &st) == 0 && S_ISLNK(st.st_mode), "the dangling link is left as it was");
}

static void not_regular(void)
{
    char fifo[300], sub[300], dev[300];
    struct stat st;
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    CHECK(mkfifo(fifo, 0644) == 0, "mkfifo");
    CHECK(util_check_dest(fifo) == -1 && strstr(err_msg(), "fifo: not a regular file (a FIFO)"), "%s", err_msg());
    CHECK(util_write_text(fifo, "x") == -1, "a FIFO is refused");
    CHECK(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode), "and stays a FIFO");

    snprintf(sub, sizeof sub, "%s/sub", dir);
    CHECK(mkdir(sub, 0755) == 0, "mkdir");
    CHECK(util_write_text(sub, "x") == -1 && strstr(err_msg(), "sub: not a regular file (a directory)"), "%s", err_msg());
    CHECK(lstat(sub, &st) == 0 && S_ISDIR(st.st_mode), "the directory stays");

    /* the reported damage: a device node (as root, a copy of /dev/null's numbers) replaced by a file */
    snprintf(dev, sizeof dev, "%s/null", dir);
    if (mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0) {
        CHECK(util_write_text(dev, "x") == -1 && strstr(err_msg(), "null: not a regular file (a device)"), "%s", err_msg());
        CHECK(lstat(dev, &st) == 0 && S_ISCHR(st.st_mode), "the device node stays a device");
        char link[300];
        snprintf(link, sizeof link, "%s/to-null", dir);
        CHECK(symlink("null", link) == 0 && util_write_text(link, "x") == -1 && strstr(err_msg(), "not a regular file"),
              "a link to a device is refused too: %s", err_msg());
    } else {
        printf("(not root: the device-node check ran on the FIFO only)\n");
    }
    CHECK(leftovers() == 0, "no temporary file left behind");
}

static void missing_directory(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/no/such/p.csv", dir);
    CHECK(util_check_dest(path) == -1 && strstr(err_msg(), "p.csv: directory") && strstr(err_msg(), "no/such") &&
              !strstr(err_msg(), ".tmp"),
          "named against the output, not a temporary name: %s", err_msg());
    char tmp[4200];
    CHECK(!util_open_tmp(path, tmp, sizeof tmp) && !strstr(err_msg(), ".tmp"), "%s", err_msg());
    CHECK(util_check_dest("") == -1, "an empty path");
    snprintf(path, sizeof path, "%s/fine.csv", dir);
    CHECK(util_check_dest(path) == 0, "a new file in an existing directory: %s", err_msg());
}

static void through_the_binary(void)
{
    char cmd[1024], out[4096];
    struct stat st;
    /* txt2img -o to a symlink: the PNG lands in its file */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && : > t.png && ln -s t.png l.png && cd - >/dev/null && $G txt2img -model data/models/fmnist-ldm "
             "-p 'A photo of a bag' -steps 1 -seed 1 -o '%s/l.png'",
             dir, dir);
    int rc = check_sh(cmd, out, sizeof out);
    char l[300], t[300];
    snprintf(l, sizeof l, "%s/l.png", dir);
    snprintf(t, sizeof t, "%s/t.png", dir);
    CHECK(rc == 0, "txt2img through a link: %s", out);
    CHECK(lstat(l, &st) == 0 && S_ISLNK(st.st_mode), "-o link.png stays a link");
    CHECK(stat(t, &st) == 0 && st.st_size > 100, "its file holds the PNG (%lld bytes)", (long long)st.st_size);

    snprintf(cmd, sizeof cmd,
             "$G txt2img -model data/models/fmnist-ldm -p 'A photo of a bag' -steps 1 -seed 1 -o '%s/fifo'", dir);
    rc = check_sh(cmd, out, sizeof out);
    CHECK(rc != 0 && strstr(out, "fifo: not a regular file"), "txt2img -o fifo: rc %d: %s", rc, out);
}

int main(void)
{
    snprintf(dir, sizeof dir, "build/test_util.%d", (int)getpid());
    char cmd[600], out[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    check_sh(cmd, out, sizeof out);
    symlinks();
    not_regular();
    missing_directory();
    through_the_binary();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    check_sh(cmd, out, sizeof out);
    return check_done("test_util");
}
