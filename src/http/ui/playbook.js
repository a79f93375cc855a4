// The agent's coaching hints, from the customer-service playbook (shared/seeds): what a
// detector's finding means for the agent and what to say, in English and Chinese. The
// suggested handling script of a transfer prompt comes from the server (the alert's
// `suggestion`); these are the smaller nudges before and around it.

/** Per signal kind: a headline, what to do, and a line to say, each in English and Chinese. */
export const HINTS = {
  raised_voice: {
    title: ['The customer is raising their voice', '客户音量升高'],
    do: ['Deal with the feeling before the problem: do not interrupt, do not argue, slow down.',
      '先处理情绪,再处理问题:不打断、不急于辩解、放慢语速。'],
    say: ['"I understand how frustrating this is. I will stay with this until it is solved."',
      '“我非常理解您现在的着急,您放心,我会全程跟进直到问题解决。”'],
  },
  complaint: {
    title: ['A complaint', '客户在投诉'],
    do: ['Acknowledge the fact and the feeling, then confirm what they want most.',
      '情绪反馈 + 事实认可,再确认核心诉求。'],
    say: ['"Would you like us to refund you first, or send a replacement?"',
      '“您希望我们优先处理退款还是补发商品?”'],
  },
  repeated_complaint: {
    title: ['The same grievance again', '客户在重复表达不满'],
    do: ['They do not feel heard. Repeat their point back in your own words and give a concrete next step with a time.',
      '客户觉得没有被听到:复述他的诉求,给出具体的下一步和时间。'],
    say: ['"So the delivery promised for Monday never came, is that right? I will have an answer for you within the hour."',
      '“您的意思是……,对吗?我会在 1 小时内告知您具体进度。”'],
  },
  threat_media: {
    title: ['Threat to go to the press', '客户威胁向媒体曝光'],
    do: ['Apologise at once, show you take it seriously, offer to bring in your supervisor. Do not argue about the threat.',
      '第一时间致歉并表明重视态度,主动提出转接主管,不要就威胁本身争执。'],
    say: ['"I am very sorry for the experience you have had. I am bringing in my supervisor now, who can offer you a better solution. Is that all right?"',
      '“非常抱歉让您有不好的体验,我现在就为您转接我们的主管,他会给您更妥善的处理方案,您看可以吗?”'],
  },
  threat_social: {
    title: ['Threat to post on social media', '客户威胁发社交平台'],
    do: ['Move to one-to-one follow-up and tell them their case now has priority.',
      '切换为“一对一专属跟进”,告知客户问题将优先处理。'],
    say: ['"I have put your case on a priority track; I will personally follow it through."',
      '“已为您开通绿色通道,问题将优先处理。”'],
  },
  threat_legal: {
    title: ['Legal threat', '客户提到法律途径'],
    do: ['Stay calm and factual, make no admissions or promises you cannot keep; the call is recorded. Your supervisor will involve legal if needed.',
      '保持冷静,只陈述事实,不做无法兑现的承诺;沟通全程有记录,必要时由主管同步法务。'],
    say: ['"I understand. Let me make sure the right person handles this for you today."',
      '“我理解。我会确保今天由合适的负责人为您处理。”'],
  },
  threat_regulator: {
    title: ['Threat to complain to a regulator', '客户威胁向监管部门投诉'],
    do: ['Treat it as a formal complaint: write down the facts and escalate within 10 minutes.',
      '按正式投诉处理:记录事实,10 分钟内升级。'],
    say: ['"I am recording your complaint formally and escalating it now."',
      '“我现在就为您正式登记并升级处理。”'],
  },
  churn: {
    title: ['The customer may leave', '客户有流失风险'],
    do: ['Replace vague promises with a concrete commitment and a deadline.',
      '用具体承诺和时间代替空泛表述。'],
    say: ['"We will process your refund today, before 6 pm."',
      '“我们将在今天 18 点前为您办理退款。”(而不是“我们尽快处理”)'],
  },
  escalation_request: {
    title: ['Asks for a manager', '客户要求找主管'],
    do: ['Do not refuse or stall: escalate within 10 minutes and tell the customer who will call and when.',
      '不要拒绝或拖延:10 分钟内转接高级专员,并告知客户谁会在何时联系。'],
    say: ['"Of course. I am bringing in my supervisor now."',
      '“好的,我现在就为您转接我们的主管。”'],
  },
  interruption: {
    title: ['The customer keeps talking over you', '客户在抢话'],
    do: ['Stop and let them finish: they need to be heard before they can listen. Then restate their point.',
      '停下来让客户说完:客户先要被倾听,才会听你说。然后复述他的诉求。'],
    say: ['"Please go on, I am listening." … "So what you need is …, is that right?"',
      '“您请说,我在听。”……“您的意思是……,对吗?”'],
  },
  speaking_rate: {
    title: ['The customer is speaking faster', '客户语速加快'],
    do: ['Rising pace is rising anger: slow your own pace, lower your voice, acknowledge the feeling.',
      '语速加快往往是情绪升级:放慢自己的语速、降低音量,先承接情绪。'],
    say: ['"I can hear this matters a lot to you. Let us go through it together, step by step."',
      '“我能感受到这件事对您很重要,我们一步一步来解决。”'],
  },
  dead_air: {
    title: ['Silence on the line', '通话静音'],
    do: ['Never leave the customer in silence: say what you are doing and how long it takes; ask before a hold.',
      '不要让客户干等:告诉客户您在做什么、需要多久;需要等待时先征得同意。'],
    say: ['"I am checking that for you now; it will take about one more minute."',
      '“我正在为您查询,大约还需要一分钟,请您稍等。”'],
  },
  agent_interruption: {
    title: ['You cut in', '您打断了客户'],
    do: ['Let the customer finish before you speak; interrupting an upset customer makes it worse.',
      '让客户把话说完再回应;打断情绪激动的客户只会火上浇油。'],
    say: ['"Sorry, please go on."', '“抱歉,您请继续说。”'],
  },
  agent_speaking_rate: {
    title: ['You are speaking fast', '您的语速偏快'],
    do: ['Slow down and leave pauses, so the customer can follow and respond.',
      '放慢语速、适当停顿,让客户跟得上、有回应的机会。'],
    say: ['"Let me go through that again, more slowly."', '“我再慢一点给您说一遍。”'],
  },
  agent_conduct: {
    title: ['Mind your wording', '注意用语'],
    do: ['Avoid blunt phrases ("that\'s impossible", "read the manual yourself"): acknowledge the feeling, then say what you can do and by when.',
      '避免生硬表述(如“这不可能”“你自己看说明”):先承接情绪,再说明能做什么、何时完成。'],
    say: ['"I understand how frustrating this is. Here is what I can do for you right now…"',
      '“我理解您现在的心情,遇到这种情况确实会让人着急。我现在可以为您……”'],
  },
};

/** The playbook's time limits, shown on the agent's screen. */
export const TIME_LIMITS = [
  ['Escalate within 10 minutes when you cannot solve it', '无法解决时,10 分钟内转接高级专员'],
  ['A solution within the 30-minute golden period', '把握“30 分钟黄金处理期”'],
  ['A follow-up call within 24 hours', '问题解决后 24 小时内回访'],
];

/** What to do for each kind of upset customer (the alert's customer_type). */
export const CUSTOMER_TYPE_HINT = {
  emotion_led: ['Empathy first, then the fix, once they have calmed down.', '先共情再解决问题,待情绪平复后快速落实方案。'],
  problem_led: ['Go straight to a concrete three-step plan.', '直接聚焦解决方案,明确告知“三步处理法”。'],
  instigating: ['Stay calm; the call is recorded; your supervisor will involve legal.', '保持冷静,全程记录,同步法务团队。'],
};
