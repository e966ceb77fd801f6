/// Chat templates for base models that ship none, chosen by name with the
/// `chat_template:` option (`DataOptions.chatTemplate`).
public enum BuiltinTemplate: String, CaseIterable, Sendable {
    case chatml, alpaca, llama2

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
        }
    }
}
