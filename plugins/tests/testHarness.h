/*
 * A minimal test harness for the plugin's host-side tests (no external dependency).
 *
 * SOFTMASK_TEST(name) { ... } registers a case; CHECK* macros throw on failure with file, line and
 * the values involved. Each test executable runs all its cases (or those named on the command line)
 * and exits non-zero when any fails, which is what ctest looks at.
 */
#ifndef SOFTMASK_PLUGIN_TEST_HARNESS_H
#define SOFTMASK_PLUGIN_TEST_HARNESS_H

#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace softmask_test
{

struct TestCase
{
    char const* name;
    void (*body)();
};

inline std::vector<TestCase>& registry()
{
    static std::vector<TestCase> cases;
    return cases;
}

struct Registrar
{
    Registrar(char const* name, void (*body)())
    {
        registry().push_back({name, body});
    }
};

class TestFailure : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(char const* file, int line, std::string const& what)
{
    std::ostringstream text;
    text << file << ':' << line << ": " << what;
    throw TestFailure(text.str());
}

inline int runTests(int argc, char** argv)
{
    int failed = 0;
    int ran = 0;
    for (TestCase const& test : registry())
    {
        bool selected = argc < 2;
        for (int i = 1; i < argc; ++i)
        {
            selected = selected || std::strcmp(argv[i], test.name) == 0;
        }
        if (!selected)
        {
            continue;
        }
        ++ran;
        try
        {
            test.body();
            std::printf("[ PASS ] %s\n", test.name);
        }
        catch (std::exception const& error)
        {
            ++failed;
            std::printf("[ FAIL ] %s\n         %s\n", test.name, error.what());
        }
    }
    std::printf("%d of %d test cases passed\n", ran - failed, ran);
    return failed == 0 && ran > 0 ? 0 : 1;
}

} // namespace softmask_test

#define SOFTMASK_TEST(name)                                                                                            \
    static void name();                                                                                                \
    static ::softmask_test::Registrar name##Registrar(#name, name);                                                    \
    static void name()

#define CHECK(condition)                                                                                               \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(condition))                                                                                              \
        {                                                                                                              \
            ::softmask_test::fail(__FILE__, __LINE__, "CHECK(" #condition ") failed");                                 \
        }                                                                                                              \
    } while (false)

#define CHECK_EQ(actual, expected)                                                                                     \
    do                                                                                                                 \
    {                                                                                                                  \
        auto const& checkActual_ = (actual);                                                                           \
        auto const& checkExpected_ = (expected);                                                                       \
        if (!(checkActual_ == checkExpected_))                                                                         \
        {                                                                                                              \
            std::ostringstream checkText_;                                                                             \
            checkText_ << "CHECK_EQ(" #actual ", " #expected ") failed: " << checkActual_ << " != " << checkExpected_; \
            ::softmask_test::fail(__FILE__, __LINE__, checkText_.str());                                               \
        }                                                                                                              \
    } while (false)

//! Checks that text contains fragment (for error messages).
#define CHECK_CONTAINS(text, fragment)                                                                                 \
    do                                                                                                                 \
    {                                                                                                                  \
        std::string const checkText_(text);                                                                            \
        if (checkText_.find(fragment) == std::string::npos)                                                            \
        {                                                                                                              \
            ::softmask_test::fail(__FILE__, __LINE__,                                                                  \
                std::string("expected \"") + (fragment) + "\" in \"" + checkText_ + "\"");                             \
        }                                                                                                              \
    } while (false)

#define SOFTMASK_TEST_MAIN()                                                                                           \
    int main(int argc, char** argv)                                                                                    \
    {                                                                                                                  \
        return ::softmask_test::runTests(argc, argv);                                                                  \
    }

#endif // SOFTMASK_PLUGIN_TEST_HARNESS_H
