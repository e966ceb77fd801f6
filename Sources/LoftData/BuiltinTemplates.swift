/// Chat templates for base models that ship none, chosen by name with the
/// `chat_template:` option (`DataOptions.chatTemplate`).
public enum BuiltinTemplate: String, CaseIterable, Sendable {
    case chatml, alpaca, llama2, gemma

    /// The Jinja source of a `chat_template:` value: a built-in's by name, else the value itself.
    public static func source(of nameOrSource: String) -> String {
        BuiltinTemplate(rawValue: nameOrSource.lowercased())?.source ?? nameOrSource
    }

    public var source: String {
        switch self {
        case .chatml:
            return "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
        case .alpaca:
            return "{% if messages[0]['role'] != 'system' %}{{ 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\\n\\n' }}{% endif %}"
                + "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
                + "{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
                + "{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + (eos_token or '') + '\\n\\n' }}"
                + "{% else %}{{ '### Input:\\n' + message['content'] + '\\n\\n' }}{% endif %}{% endfor %}"
                + "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"
        case .llama2:
            return "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set loop_messages = messages[1:] %}"
                + "{% else %}{% set system = '' %}{% set loop_messages = messages %}{% endif %}"
                + "{% for message in loop_messages %}{% if message['role'] == 'user' %}"
                + "{% if loop.index0 == 0 and system %}{{ (bos_token or '') + '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + message['content'] + ' [/INST]' }}"
                + "{% else %}{{ (bos_token or '') + '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
                + "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + ' ' + (eos_token or '') }}{% endif %}{% endfor %}"
        case .gemma:
            // Gemma's turns (the format of Gemma 2/3's instruction-tuned models, text only): no
            // system role, so a system message opens the first user turn; the assistant is "model";
            // contents are trimmed. For the pretrained Gemma 3 GGUFs, which ship no template.
            return "{{ bos_token or '' }}{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] + '\n\n' %}"
                + "{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
                + "{% for message in turns %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
                + "{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + (message['content'] | trim) + '<end_of_turn>\n' }}"
                + "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
        }
    }
}
