/* test_names.c - task ids and client file names: what is accepted and what is refused. */
#include "check.h"
#include "taskmill/task.h"
#include "taskmill/text.h"

static void test_ids(void)
{
    char id[TASK_ID_LEN + 1];

    task_id_new(id);
    CHECK(task_id_valid(id));
    CHECK(task_id_valid("3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f"));
    CHECK(!task_id_valid("3F1C2D4E-5B6A-4C7D-8E9F-0A1B2C3D4E5F")); /* canonical is lower case */
    CHECK(!task_id_valid("3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5"));
    CHECK(!task_id_valid("3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f0"));
    CHECK(!task_id_valid("3f1c2d4e+5b6a-4c7d-8e9f-0a1b2c3d4e5f"));
    CHECK(!task_id_valid("../../../../etc/passwd-aaaaaaaaaaaaaa"));
    CHECK(!task_id_valid(""));
    CHECK(!task_id_valid(NULL));
}

static void test_file_names(void)
{
    char longname[300];

    CHECK(task_file_name_problem("my_file.mp4") == NULL);
    CHECK(task_file_name_problem("Ünïcødé clip 2024.mkv") == NULL);
    CHECK(task_file_name_problem(".hidden.mp4") == NULL);
    CHECK(task_file_name_problem("") != NULL);
    CHECK(task_file_name_problem("..") != NULL);
    CHECK(task_file_name_problem("a/b.mp4") != NULL);
    CHECK(task_file_name_problem("/etc/passwd") != NULL);
    CHECK(task_file_name_problem("..\\x.mp4") != NULL);
    CHECK(task_file_name_problem("a\\b.mp4") != NULL);
    CHECK(task_file_name_problem("x..mp4") != NULL);
    CHECK(task_file_name_problem("tab\there.mp4") != NULL);
    CHECK(task_file_name_problem("nl\n.mp4") != NULL);
    CHECK(task_file_name_problem("del\x7f.mp4") != NULL);
    CHECK(task_file_name_problem("c1\xc2\x85.mp4") != NULL);       /* U+0085, a C1 control */
    CHECK(task_file_name_problem("nbsp\xc2\xa0.mp4") == NULL);     /* U+00A0 is printable */
    CHECK(task_file_name_problem("bad\xff.mp4") != NULL);          /* not UTF-8 */
    CHECK(task_file_name_problem("over\xc0\xaf.mp4") != NULL);     /* overlong '/' */
    CHECK(task_file_name_problem("surr\xed\xa0\x80.mp4") != NULL); /* UTF-16 surrogate */
    memset(longname, 'a', 255);
    strcpy(longname + 251, ".mp4");
    CHECK(strlen(longname) == 255 && task_file_name_problem(longname) == NULL);
    memset(longname, 'a', 256);
    strcpy(longname + 252, ".mp4");
    CHECK(task_file_name_problem(longname) != NULL);
}

/* Found by fuzz_request: a message cut inside a character must be clipped to valid UTF-8. */
static void test_clip(void)
{
    char a[] = "ok \xc3", b[] = "caf\xc3\xa9", c[] = "x\xffy";

    utf8_clip(a);
    utf8_clip(b);
    utf8_clip(c);
    CHECK_STR(a, "ok ");
    CHECK_STR(b, "caf\xc3\xa9");
    CHECK_STR(c, "x");
}

/* Log lines: control characters and bytes that are not UTF-8 are escaped, text is kept. */
static void test_escape(void)
{
    char buf[64];

    text_escape("ok \xc3\xa9t\xc3\xa9", buf, sizeof(buf));
    CHECK_STR(buf, "ok \xc3\xa9t\xc3\xa9");
    text_escape("a\r\n<0>b\x7f\xc2\x85\xff\\", buf, sizeof(buf));
    CHECK_STR(buf, "a\\x0d\\x0a<0>b\\x7f\\xc2\\x85\\xff\\\\");
    text_escape("\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n", buf, 10); /* cut on a whole escape */
    CHECK_STR(buf, "\\x0a\\x0a");
    CHECK(!text_has_control("plain \xc3\xa9") && text_has_control("a\tb") &&
          text_has_control("a\xc2\x9f"
                           "b") &&
          !utf8_valid("\xed\xa0\x80"));
}

int main(void)
{
    test_escape();
    test_clip();
    test_ids();
    test_file_names();
    return check_done("test_names");
}
