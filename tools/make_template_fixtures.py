#!/usr/bin/env python3
"""Writes the expected outputs that LoftTemplatesTests compare against.

Every case is rendered by transformers' own chat-template code path
(`transformers.utils.chat_template_utils.render_jinja_template`, which builds the
ImmutableSandboxedEnvironment with trim_blocks/lstrip_blocks, AssistantTracker,
loopcontrols, and transformers' tojson/raise_exception/strftime_now), so the
Swift interpreter is checked against the reference, not against itself.

`strftime_now` is pinned to FIXED_TIME so outputs are deterministic; the Swift
tests pin their clock to the same wall-clock time.

Run from the repository root:  /opt/refvenv/bin/python tools/make_template_fixtures.py
(needs transformers, jinja2, and ../shared/fixtures/datasets for the alpaca sample).
For a bigger bug hunt, raise the random case counts with the environment variables
EXPR_FUZZ / EXPR_SEED, STR_FUZZ / STR_SEED and CONV_FUZZ (don't commit those outputs).
Writes Tests/LoftTemplatesTests/Fixtures/{template_cases,continue_cases,jinja_cases}.json.
"""
import datetime
import json
import pathlib

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "LoftTemplatesTests" / "Fixtures"
TEMPLATES = FIXTURES / "templates"
FIXED_TIME = datetime.datetime(2024, 7, 26, 10, 30, 0)


def compile_pinned(source):
    compiled = ctu._compile_jinja_template(source)
    # Template globals chain to the environment's, so this pins the clock for renders.
    compiled.environment.globals["strftime_now"] = lambda fmt: FIXED_TIME.strftime(fmt)
    return compiled


def render(source, messages, tools=None, add_generation_prompt=False, mask=False, **kwargs):
    compile_pinned(source)
    rendered, indices = ctu.render_jinja_template(
        conversations=[messages], tools=tools, chat_template=source,
        add_generation_prompt=add_generation_prompt, return_assistant_tokens_mask=mask, **kwargs)
    return rendered[0], (indices[0] if indices else [])


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
            },
            "required": ["city"],
        },
    },
}

CONVERSATIONS = {
    "user_only": {"messages": [{"role": "user", "content": "Hello, how are you?"}]},
    "system_user": {"messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is 2 + 2?"}]},
    "multi_turn": {"messages": [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road? To get to the other side."}]},
    "system_multi_turn": {"messages": [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Good morning"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "How are you?"}]},
    "unicode_whitespace": {"messages": [
        {"role": "user", "content": "  Grüße — 你好 🤖\n\tsecond line  "},
        {"role": "assistant", "content": " Ça va? \"quoted\" and 'single' \\ backslash \n"}]},
    "tools_call": {"tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call12345", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
        {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 22, \"sky\": \"sunny\"}"},
        {"role": "assistant", "content": "It is 22 °C and sunny in Paris."}]},
    "tools_prompt": {"tools": [WEATHER_TOOL], "messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Oslo?"}]},
    "reasoning": {"messages": [
        {"role": "user", "content": "What is 17 * 3?"},
        {"role": "assistant", "content": "51", "reasoning_content": "17 * 3 = 51."},
        {"role": "user", "content": "And 17 * 4?"},
        {"role": "assistant", "content": "68", "reasoning_content": "17 * 4 = 68."}]},
}

SHARED_DATASETS = ROOT.parent / "shared" / "fixtures" / "datasets"


def alpaca_conversation(rows=1):
    """Real instruction data (LLaMA-Factory's alpaca demo, in ../shared/fixtures) as a
    multi-turn chat: long, multi-line answers with code and punctuation. The messages
    are copied into the fixture, so the Swift tests do not need the shared folder."""
    data = json.loads((SHARED_DATASETS / "alpaca_en_demo.json").read_text())
    messages = []
    for row in data[:rows]:
        prompt = row["instruction"] + ("\n\n" + row["input"] if row.get("input") else "")
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]
    return {"messages": messages}


CONVERSATIONS["alpaca_demo"] = alpaca_conversation()
CONVERSATIONS["content_parts"] = {"messages": [
    {"role": "user", "content": [{"type": "text", "text": "Describe the picture."}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A cat on a mat."}]}]}
CONVERSATIONS["tool_args_string"] = {"tools": [WEATHER_TOOL], "messages": [
    {"role": "user", "content": "Weather in Rome?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "abcdefghi", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
    {"role": "tool", "tool_call_id": "abcdefghi", "name": "get_weather", "content": "18 degrees"}]}

SPECIAL_TOKENS = [
    ("meta-llama-Llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("Qwen", "", "<|im_end|>"),
    ("deepseek", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("google-gemma", "<bos>", "<eos>"),
    ("CohereForAI", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    ("HuggingFaceTB", "<|im_start|>", "<|im_end|>"),
]


def special_tokens(name):
    for prefix, bos, eos in SPECIAL_TOKENS:
        if name.startswith(prefix):
            return bos, eos
    return "<s>", "</s>"


def random_conversations(count=int(__import__("os").environ.get("CONV_FUZZ", "4")), seed=3):
    """Random role orders (including ones templates reject), odd contents, tool calls
    and reasoning: drives templates down their error and edge paths."""
    import random
    rng = random.Random(seed)
    contents = ["", " ", "Hi", "  padded  ", "line1\nline2", "<think>x</think>y", "quote \" and '", "{{ not jinja }}",
                "tab\tand\u00a0nbsp", "Ünïcödé ✓ 🤖", "trailing newline\n", "[INST] fake [/INST]", "<|im_end|>"]
    out = {}
    for k in range(count):
        messages = []
        if rng.random() < 0.5:
            messages.append({"role": "system", "content": rng.choice(contents)})
        for _ in range(rng.randint(1, 5)):
            role = rng.choice(["user", "assistant", "user", "assistant", "tool"])
            m = {"role": role, "content": rng.choice(contents)}
            if role == "assistant" and rng.random() < 0.3:
                m["reasoning_content"] = rng.choice(contents)
            if role == "assistant" and rng.random() < 0.2:
                m["tool_calls"] = [{"id": "call00001", "type": "function",
                                    "function": {"name": "get_weather", "arguments": {"city": rng.choice(contents)}}}]
            if role == "tool":
                m["tool_call_id"] = "call00001"
            messages.append(m)
        conv = {"messages": messages}
        if rng.random() < 0.3:
            conv["tools"] = [WEATHER_TOOL]
        out["random_%02d" % k] = conv
    return out


CONVERSATIONS.update(random_conversations())


def conversations_for(source):
    names = ["user_only", "system_user", "multi_turn", "system_multi_turn", "unicode_whitespace", "alpaca_demo", "content_parts"]
    if "tools" in source:
        names += ["tools_call", "tools_prompt", "tool_args_string"]
    if "reasoning_content" in source or "thinking" in source:
        names += ["reasoning"]
    return names + sorted(k for k in CONVERSATIONS if k.startswith("random_"))


def extras_for(source, conversation):
    variants = [{}]
    if "enable_thinking" in source and conversation in ("user_only", "reasoning", "multi_turn"):
        variants = [{}, {"enable_thinking": False}, {"enable_thinking": True}]
    return variants


def error_record(e):
    kind = "raise" if type(e) is jinja2.exceptions.TemplateError else type(e).__name__
    return {"error": str(e), "error_kind": kind}


CONTINUE_CONVERSATIONS = {
    "continue_prefill": {"messages": [
        {"role": "user", "content": "Write a haiku."},
        {"role": "assistant", "content": "Autumn moonlight -"}]},
    "continue_trailing_space": {"messages": [
        {"role": "user", "content": "Count to three."},
        {"role": "assistant", "content": "One, two, "}]},
}


def continue_cases():
    """`continue_final_message=True` (a prefill): the render stops after the last
    message's content."""
    cases = []
    for path in sorted(TEMPLATES.glob("*.jinja")):
        source = path.read_text()
        bos, eos = special_tokens(path.stem)
        for name, conv in CONTINUE_CONVERSATIONS.items():
            case = {"template": path.name, "conversation": name, "bos_token": bos, "eos_token": eos}
            try:
                compile_pinned(source)
                rendered, _ = ctu.render_jinja_template(conversations=[conv["messages"]], chat_template=source,
                                                        continue_final_message=True, bos_token=bos, eos_token=eos)
                case["expected"] = rendered[0]
            except Exception as e:
                case.update(error_record(e))
            cases.append(case)
    return cases


def template_cases():
    cases = []
    for path in sorted(TEMPLATES.glob("*.jinja")):
        source = path.read_text()
        bos, eos = special_tokens(path.stem)
        for conversation in conversations_for(source):
            conv = CONVERSATIONS[conversation]
            for extra in extras_for(source, conversation):
                for agp in ((False,) if conversation.startswith("random_") else (False, True)):
                    case = {"template": path.name, "conversation": conversation, "add_generation_prompt": agp,
                            "extra": extra, "bos_token": bos, "eos_token": eos}
                    try:
                        case["expected"], _ = render(source, conv["messages"], tools=conv.get("tools"),
                                                     add_generation_prompt=agp, bos_token=bos, eos_token=eos, **extra)
                    except Exception as e:  # the Swift side must fail the same way
                        case.update(error_record(e))
                    cases.append(case)
    return cases


# Small templates exercising one interpreter feature each, with their contexts.
JINJA_CASES = [
    ("text_only", "plain text", {}),
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter", {}),
    ("lstrip_blocks", "line\n    {% if true %}\n    kept\n    {% endif %}\nend", {}),
    ("lstrip_not_at_line_start", "a {% if true %}b{% endif %} c", {}),
    ("plus_disables_lstrip", "x\n    {%+ if true %}y{% endif %}", {}),
    ("plus_disables_trim", "{% if true +%}\ny{% endif %}", {}),
    ("minus_modifiers", "a   \n  {%- if true -%}   \n  b  {{- ' c ' -}}  \n d{%- endif %}", {}),
    ("variable_minus", "x \n {{- 'y' -}} \n z", {}),
    ("comment_trim", "a\n  {# note #}\nb\n{#- trimmed -#}\n c", {}),
    ("raw_block", "{% raw %}{{ not parsed }}{% endraw %}!", {}),
    ("loop_vars", "{% for x in items %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }};{% endfor %}", {"items": ["a", "b", "c"]}),
    ("loop_prev_next", "{% for x in items %}[{{ loop.previtem | default('-') }}<{{ x }}>{{ loop.nextitem | default('-') }}]{% endfor %}", {"items": [1, 2, 3]}),
    ("loop_filter", "{% for x in items if x % 2 == 1 %}{{ x }}:{{ loop.index }}:{{ loop.length }} {% endfor %}", {"items": [1, 2, 3, 4, 5]}),
    ("loop_else", "{% for x in items %}{{ x }}{% else %}empty{% endfor %}", {"items": []}),
    ("loop_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("loop_dict_keys", "{% for k in d %}{{ k }}{% endfor %}", {"d": {"z": 1, "y": 2}}),
    ("loop_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("loop_scope", "{% set x = 'a' %}{% for i in range(3) %}{% set x = x ~ 'b' %}{{ x }}|{% endfor %}{{ x }}", {}),
    ("loop_cycle", "{% for i in range(5) %}{{ loop.cycle('odd', 'even') }} {% endfor %}", {}),
    ("nested_loops", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }} {% endfor %}{{ loop.index }}|{% endfor %}", {}),
    ("namespace", "{% set ns = namespace(count=0, names=[]) %}{% for m in ms %}{% set ns.count = ns.count + 1 %}{% set ns.names = ns.names + [m] %}{% endfor %}{{ ns.count }} {{ ns.names }}", {"ms": ["u", "v"]}),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = 3, 4 %}{{ t }}", {}),
    ("set_block", "{% set greeting %}Hello {{ name }}!{% endset %}[{{ greeting }}]", {"name": "Ada"}),
    ("set_block_filter", "{% set s | upper | trim %}  shout  {% endset %}[{{ s }}]", {}),
    ("macro_defaults", "{% macro f(a, b='B', c=none) %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ f(1) }} {{ f(1, 2) }} {{ f(1, c=3) }}", {}),
    ("macro_caller", "{% macro box(title) %}<{{ title }}>{{ caller() }}</{{ title }}>{% endmacro %}{% call box('t') %}inside{% endcall %}", {}),
    ("macro_caller_args", "{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(item) each([1, 2]) %}({{ item }}){% endcall %}", {}),
    ("macro_whitespace", "{% macro m(x) %}\n    {{- x -}}\n{% endmacro %}\n[{{ m('v') }}]", {}),
    ("filter_block", "{% filter upper %}hello {{ name }}{% endfilter %}", {"name": "bob"}),
    ("generation_block", "{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' %}{% generation %}{{ m.content }}<end>{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}", {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}),
    ("attribute_and_item", "{{ d.a }} {{ d['a'] }} {{ l[0] }} {{ l[-1] }} {{ d.missing is defined }} {{ l[10] is defined }}", {"d": {"a": 1}, "l": [1, 2, 3]}),
    ("dict_methods", "{{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('z', 'dflt') }} {{ d.get('z') }} {{ d.items() | list }}", {"d": {"a": 1, "b": [2]}}),
    ("slices", "{{ s[1:3] }} {{ s[::-1] }} {{ s[:-1] }} {{ l[1:] }} {{ l[::2] }} {{ l[-2:] }} {{ l[::-1] }} {{ l[5:] }}", {"s": "hello", "l": [1, 2, 3, 4, 5]}),
    ("tests", "{{ x is defined }} {{ y is undefined }} {{ n is none }} {{ s is string }} {{ d is mapping }} {{ l is iterable }} {{ l is sequence }} {{ 3 is number }} {{ 3 is integer }} {{ 3.5 is integer }} {{ true is boolean }} {{ true is true }} {{ false is false }} {{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 'a' is equalto 'a' }} {{ s is not string }} {{ d is iterable }} {{ s is iterable }}", {"x": 1, "n": None, "s": "str", "d": {}, "l": []}),
    ("in_operator", "{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in d }} {{ 'z' not in d }} {{ 'x' in undefined_var }}", {"d": {"k": 1}}),
    ("concat_arith", "{{ 1 ~ 2 ~ 'x' }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 1.5 + 1 }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 10 / 4 }} {{ 0.1 + 0.2 }}", {}),
    ("comparisons", "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ true == 1 }} {{ none == none }} {{ [1, 2] == [1, 2] }} {{ 1 != 2 }} {{ 1 < 2 < 3 }}", {}),
    ("logic", "{{ true and false }} {{ true or false }} {{ not true }} {{ 0 or 'x' }} {{ '' and 'y' }} {{ none or [] }} {{ 'a' if false else 'b' }} {{ 'c' if true }}[{{ 'd' if false }}]", {}),
    ("printing", "{{ [1, 'a', none, true, 1.5] }} {{ {'k': 'v', 'n': [1]} }} {{ none }} {{ true }} {{ 1.0 }} {{ 1e20 }} {{ 1e-7 }} {{ \"it's\" }} {{ ['it\\'s'] }} {{ undefined_thing }}", {}),
    ("string_methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' x') }}|{{ t.split() }}|{{ t.split(',') }}|{{ t.split(',', 1) }}|{{ t.startswith('a') }}|{{ t.endswith(('z', 'c')) }}|{{ t.upper() }}|{{ t.replace(',', ';') }}|{{ 'hello world'.title() }}|{{ 'HELLO'.lower() }}|{{ 'abc'.capitalize() }}|{{ t.find('b') }}|{{ t.count(',') }}|{{ '-'.join(['a', 'b']) }}|{{ 'x{}y{}'.format(1, 2) }}", {"s": "  x hi x  ", "t": "a,b, c"}),
    ("filters_text", "{{ s | trim }}|{{ s | upper }}|{{ s | lower }}|{{ s | capitalize }}|{{ 'hello big-world (ok)' | title }}|{{ s | replace('l', 'L') }}|{{ s | length }}|{{ s | wordcount }}|{{ s | reverse }}|{{ 42 | string }}|{{ s | safe }}|{{ '<a&b>' | e }}", {"s": "  heLLo World  "}),
    ("filters_lists", "{{ l | join(', ') }}|{{ l | first }}|{{ l | last }}|{{ l | length }}|{{ l | count }}|{{ l | sort }}|{{ l | sort(reverse=true) }}|{{ l | unique | list }}|{{ l | reverse | list }}|{{ l | sum }}|{{ l | min }}|{{ l | max }}|{{ 'abc' | list }}|{{ [] | first is defined }}", {"l": [3, 1, 2, 3]}),
    ("filters_objects", "{{ people | map(attribute='name') | join(',') }}|{{ people | selectattr('age', 'gt', 30) | map(attribute='name') | list }}|{{ people | rejectattr('admin') | map(attribute='name') | list }}|{{ people | selectattr('admin') | list | length }}|{{ people | sort(attribute='age') | map(attribute='name') | list }}|{{ ['a', 'B', 'c'] | map('upper') | list }}|{{ people | selectattr('name', 'equalto', 'Bo') | list }}|{{ d | items | list }}|{{ d | dictsort }}|{{ people | map(attribute='missing', default='?') | list }}", {"people": [{"name": "Al", "age": 40, "admin": True}, {"name": "Bo", "age": 25}, {"name": "Cy", "age": 33, "admin": False}], "d": {"b": 2, "a": 1}}),
    ("filters_numbers", "{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 3.7 | int }}|{{ '12' | int }}|{{ 'x' | int }}|{{ '1.5' | float }}|{{ 3 | float }}|{{ 7 | round }}|{{ -1 | abs }}", {}),
    ("filter_default", "{{ missing | default('dflt') }}|{{ '' | default('empty') }}|{{ '' | default('empty', true) }}|{{ none | default('n') }}|{{ missing | d('d') }}|{{ 0 | default(5, boolean=true) }}", {}),
    ("tojson", "{{ v | tojson }}\n{{ v | tojson(indent=2) }}\n{{ v | tojson(sort_keys=true) }}\n{{ 'é\"\\n\\u0001' | tojson }}\n{{ [] | tojson(indent=4) }}\n{{ {} | tojson }}\n{{ 1.5 | tojson }}\n{{ v | tojson(separators=(',', ':')) }}", {"v": {"z": [1, 2.0, None, True], "a": {"nested": "ünï"}, "e": {}}}),
    ("indent_filter", "{{ text | indent(2) }}|{{ text | indent(2, true) }}|{{ 'a\n\nb' | indent(3, blank=true) }}|{{ text | indent('> ') }}", {"text": "one\ntwo\nthree"}),
    ("strftime", "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M') }} {{ strftime_now('%A %B %-d') }}", {}),
    ("dict_global", "{{ dict(a=1, b='x') }} {{ dict(a=1)['a'] }}", {}),
    ("string_escapes", "{{ 'tab\\there' }}|{{ \"dq \\\"q\\\"\" }}|{{ 'uni \\u00e9 \\x41' }}|{{ 'adj' 'acent' }}", {}),
    ("whitespace_chat_like", "{%- for message in messages %}\n    {%- if message.role == 'user' %}\n        {{- '<u>' + message.content + '</u>\\n' }}\n    {%- else %}\n        {{- '<a>' + message.content }}\n        {%- if not loop.last %}\n            {{- '</a>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<a>' }}\n{%- endif %}\n", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}], "add_generation_prompt": True}),
    ("inline_if_chain", "{% for i in range(4) %}{{ 'zero' if i == 0 else 'one' if i == 1 else 'many' }} {% endfor %}", {}),
    ("filter_precedence", "{{ -1 | abs }} {{ 'a' ~ 'b' | upper }} {{ not 'x' is string }} {{ [1, 2] | length + 1 }}", {}),
    ("undefined_behaviour", "[{{ nothing }}][{{ nothing | length }}][{% for x in nothing %}x{% endfor %}][{{ nothing is none }}][{{ not nothing }}][{{ nothing ~ 'x' }}]", {}),
    ("if_elif_else", "{% for v in [1, 2, 3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}other{% endif %} {% endfor %}", {}),
    ("ws_tabs_and_comments", "a\n\t {# c #}\n\t{% if true %}\n\tb\n\t{% endif %}\n{%- if true %} c{% endif %}", {}),
    ("ws_variable_line_start", "x\n    {{ 'v' }}\n    {% if true %}w{% endif %}  \n", {}),
    ("ws_block_mid_line", "  a {% if true %}\nb{% endif %}\n  c", {}),
    ("ws_start_of_template", "   {% if true %}x{% endif %}", {}),
    ("ws_minus_both_sides_blank_lines", "a\n\n\n{%- for i in [1, 2] -%}\n\n  {{ i }}\n\n{%- endfor -%}\n\nz", {}),
    ("ws_raw_minus", "a  {%- raw -%}  {{ x }}  {%- endraw -%}  b", {}),
    ("ws_comment_minus", "a  {#- c -#}  b\n  {#+ c #}\nc", {}),
    ("ws_trailing_text_after_tag", "{% if true %}   tail\n{% endif %}end", {}),
    ("macro_varargs_kwargs", "{% macro m(a) %}{{ a }}|{{ varargs }}|{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }}", {}),
    ("loop_filtered_previtem", "{% for x in xs if x != 2 %}{{ loop.previtem | default('-') }}>{{ x }} {% endfor %}", {"xs": [1, 2, 3, 4]}),
    ("selectattr_tests", "{{ xs | selectattr('a', 'defined') | list | length }} {{ xs | rejectattr('a', 'none') | list | length }} {{ xs | selectattr('a', 'equalto', 1) | list }}", {"xs": [{"a": 1}, {"b": 2}, {"a": None}]}),
    ("map_filters", "{{ ['  a ', ' b'] | map('trim') | join(',') }} {{ [1, 2] | map('string') | join('+') }} {{ 'hello' | first }} {{ [1, 2, 3] | join }}", {}),
    ("split_variants", "{{ ' a  b c '.split(None, 1) }} {{ 'a,b,,c'.split(',') }} {{ 'a b'.rsplit(' ', 1) }} {{ 'x\ny\r\nz'.splitlines() }}", {}),
    ("emoji_strings", "{{ s | length }} {{ s[0:2] }} {{ s[-1] }} {{ s | reverse }} {{ s | upper }}", {"s": "a🤖é\u0301b"}),
    ("tojson_options", "{{ v | tojson(ensure_ascii=true) }}\n{{ v | tojson(indent=0) }}\n{{ v | tojson(indent='\t') }}", {"v": {"k": "é🤖", "l": [1, {"m": None}]}}),
    ("float_printing", "{{ 1 / 3 }} {{ 3.0 }} {{ 1e100 }} {{ -0.0 }} {{ 10 ** -1 }} {{ 2 ** 0.5 }} {{ 1.25 | round(1) }} {{ 2.675 | round(2) }} {{ 7 / 7 }} {{ 1e16 }} {{ 123456789.0 * 1000 }}", {}),
    ("string_compare_and_in", "{{ 'abc' < 'abd' }} {{ 'B' < 'a' }} {{ 'role' in {'role': 1} }} {{ 2 is in [1, 2] }} {{ 'x' is in 'xyz' }} {{ [1, 2] < [1, 3] }}", {}),
    ("nested_namespace_in_macro", "{% set ns = namespace(n=0) %}{% macro bump() %}{% set ns.n = ns.n + 1 %}{% endmacro %}{{ bump() }}{{ bump() }}{{ ns.n }}", {}),
    ("set_in_if_at_top", "{% if true %}{% set x = 1 %}{% endif %}{{ x }}{% for i in [1] %}{% if true %}{% set y = 2 %}{% endif %}{{ y }}{% endfor %}[{{ y }}]", {}),
    ("messages_mutation_guard", "{% set m = messages[1:] %}{{ m | length }}{{ messages | length }}{% set messages = messages[:1] %}{{ messages | length }}", {"messages": [{"r": 1}, {"r": 2}, {"r": 3}]}),
    ("list_dict_literals", "{{ [1, [2, 3], {'k': (1, 2)}] }} {{ {'a': 1, 'b': 2}['b'] }} {{ (1, 2)[0] }}", {}),
]

JINJA_ERROR_CASES = [
    ("raise_exception", "ok {{ raise_exception('Conversation roles must alternate!') }}", {}),
    ("syntax_unclosed_block", "line one\n{% if x %}\nno end", {}),
    ("syntax_bad_expression", "a\nb {{ 1 + }}", {}),
    ("syntax_unknown_tag", "x\n\n  {% frobnicate %}", {}),
    ("syntax_unclosed_variable", "{{ x ", {}),
    ("undefined_attribute", "{{ missing.attr }}", {}),
    ("unknown_filter", "{{ 1 | nosuchfilter }}", {}),
    ("add_str_int", "{{ 'a' + 1 }}", {}),
    ("tojson_undefined", "{{ missing | tojson }}", {}),
]


def whitespace_fuzz_cases(count=300, seed=1234):
    """Random mixes of text, blocks, comments and prints with random `-`/`+`
    modifiers: jinja2's whitespace rules are the easiest thing to get subtly wrong."""
    import random
    rng = random.Random(seed)
    texts = ["", " ", "  ", "\t", "\n", " \n", "\n  ", "a", " b ", "c\n", "\n\n", "  d\n  ", "\t\te\n"]

    def tag(body, kind="%"):
        left = rng.choice(["", "", "-", "+"]) if kind != "{" else rng.choice(["", "-"])
        right = rng.choice(["", "", "-", "+"]) if kind != "{" else rng.choice(["", "-"])
        if kind == "{":
            return "{{" + left + " " + body + " " + right + "}}"
        if kind == "#":
            return "{#" + left + " " + body + " " + right + "#}"
        return "{%" + left + " " + body + " " + right + "%}"

    def block(depth):
        parts = []
        for _ in range(rng.randint(1, 4)):
            r = rng.random()
            parts.append(rng.choice(texts))
            if r < 0.25 and depth < 3:
                cond = rng.choice(["true", "false"])
                parts += [tag("if " + cond), block(depth + 1)]
                if rng.random() < 0.4:
                    parts += [tag("else"), block(depth + 1)]
                parts.append(tag("endif"))
            elif r < 0.4 and depth < 3:
                parts += [tag("for i in [1, 2]"), block(depth + 1), tag("endfor")]
            elif r < 0.6:
                parts.append(tag(rng.choice(["'x'", "i | default(0)", "' y '"]), "{"))
            elif r < 0.7:
                parts.append(tag("note", "#"))
            elif r < 0.8:
                parts.append(tag("set v = 1"))
        parts.append(rng.choice(texts))
        return "".join(parts)

    return [("ws_fuzz_%03d" % k, block(0) + rng.choice(["", "\n", " \n"]), {}) for k in range(count)]


def expression_fuzz_cases(count=int(__import__("os").environ.get("EXPR_FUZZ", "400")), seed=int(__import__("os").environ.get("EXPR_SEED", "99"))):
    """Random expressions over numbers, strings, lists, none and booleans, printed:
    checks operator semantics, Python number formatting and filters together."""
    import random
    rng = random.Random(seed)
    atoms = ["0", "1", "7", "-3", "2.5", "0.1", "-1.5", "3.0", "'a'", "'Bc'", "' x '", "''", "[1, 2]", "[]",
             "['b', 'a']", "none", "true", "false", "n", "s", "l", "d"]
    binary = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">=", "and", "or", "in", "not in"]
    filters = ["length", "string", "upper", "trim", "first", "last", "abs", "int", "float", "round", "tojson",
               "join(',')", "reverse | list", "sort", "default('z')", "list", "lower", "capitalize", "title"]
    tests = ["string", "number", "none", "defined", "integer", "float", "iterable", "mapping", "true", "odd"]

    def expr(depth):
        r = rng.random()
        if depth > 2 or r < 0.3:
            return rng.choice(atoms)
        if r < 0.6:
            return "(" + expr(depth + 1) + " " + rng.choice(binary) + " " + expr(depth + 1) + ")"
        if r < 0.8:
            return "(" + expr(depth + 1) + " | " + rng.choice(filters) + ")"
        if r < 0.9:
            return "(" + expr(depth + 1) + " is " + rng.choice(["", "not "]) + rng.choice(tests) + ")"
        return "(not " + expr(depth + 1) + ")"

    context = {"n": 5, "s": "Hi there", "l": [3, 1, 2], "d": {"k": "v"}}
    return [("expr_fuzz_%03d" % k, "{{ " + expr(0) + " }}", context) for k in range(count)]


def string_fuzz_cases(count=int(__import__("os").environ.get("STR_FUZZ", "300")), seed=int(__import__("os").environ.get("STR_SEED", "5"))):
    """Random strings (mixed scripts, case pairs, whitespace kinds) through the
    string methods and filters templates use."""
    import random
    rng = random.Random(seed)
    alphabet = list("aZ z-_.'(1\t\n\r") + ["é", "ß", "İ", "ǅ", "Σ", "ς", "ﬁ", "\u00a0", "\u2003", "\u3000", "日", "🤖", "\u0301", "'", "x"]
    ops = ["s.title()", "s.capitalize()", "s.upper()", "s.lower()", "s.strip()", "s.lstrip()", "s.rstrip()", "s.split()",
           "s.split(' ')", "s.splitlines()", "s.replace('a', 'b')", "s.startswith('a')", "s.endswith('x')", "s | title",
           "s | capitalize", "s | wordcount", "s | length", "s | reverse", "s | trim", "s | upper", "s | lower",
           "s.strip('a')", "s | tojson", "s[1:-1]", "s[::2]", "s.find('z')", "s.count('a')", "s.split('a', 1)", "s | list | length",
           "s.isspace()", "s.isalpha()", "s.isdigit()", "s | replace(' ', '')", "s | indent(2)", "s ~ s | length"]
    cases = []
    for k in range(count):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        cases.append(("str_fuzz_%03d" % k, "{{ " + rng.choice(ops) + " }}|{{ " + rng.choice(ops) + " }}", {"s": text}))
    return cases


def jinja_cases():
    out = []
    for name, source, context in JINJA_CASES + JINJA_ERROR_CASES + whitespace_fuzz_cases() + expression_fuzz_cases() + string_fuzz_cases():
        case = {"name": name, "template": source, "context": context}
        try:
            compiled = compile_pinned(source)
            if "messages" in context and "generation" in source:
                text, indices = ctu._render_with_assistant_indices(
                    compiled, context["messages"], None, None, context.get("add_generation_prompt", False))
                case["expected"] = text
                case["generation"] = [list(r) for r in indices]
            else:
                case["expected"] = compiled.render(**context)
        except jinja2.exceptions.TemplateSyntaxError as e:
            case.update({"error": e.message, "error_kind": "syntax", "line": e.lineno})
        except Exception as e:
            case.update(error_record(e))
        out.append(case)
    return out


def main():
    header = {"generator": "tools/make_template_fixtures.py", "transformers": transformers.__version__,
              "jinja2": jinja2.__version__, "fixed_time": FIXED_TIME.isoformat()}
    (FIXTURES / "template_cases.json").write_text(json.dumps(
        {**header, "conversations": CONVERSATIONS, "cases": template_cases()}, ensure_ascii=False, indent=0) + "\n")
    (FIXTURES / "continue_cases.json").write_text(json.dumps(
        {**header, "conversations": CONTINUE_CONVERSATIONS, "cases": continue_cases()}, ensure_ascii=False, indent=0) + "\n")
    (FIXTURES / "jinja_cases.json").write_text(json.dumps(
        {**header, "cases": jinja_cases()}, ensure_ascii=False, indent=0) + "\n")


if __name__ == "__main__":
    main()
