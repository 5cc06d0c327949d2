"""Builds ``data/triage.jsonl``: desk phrases translated between English and five languages, with intents.

The phrases and their reference translations are data tables written by hand in this module; the
generator pairs each of the ten directions (English -> fr/es/ar/ru/uk and back) with one phrase of each
intent, chosen by a seeded shuffle, and writes the examples in a seeded order. Run it to rewrite the file::

    python -m slm_eval.tasks.border.build_triage_data
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slm_eval.tasks.base import Example
from slm_eval.tasks.border.data_files import data_path, write_examples
from slm_eval.tasks.border.triage import DATA_FILE, INTENTS

SEED = 20240604
LANGUAGES: tuple[str, ...] = ("fr", "es", "ar", "ru", "uk")


@dataclass(frozen=True)
class Phrase:
    """One desk phrase in English and its reference translations.

    Attributes:
        key: a stable short id, e.g. ``pov-1``.
        intent: the phrase's label from :data:`INTENTS`.
        speaker: ``officer`` or ``traveller``.
        text: the phrase in each language, keyed by ISO 639-1 code (``en`` and every code of :data:`LANGUAGES`).
    """

    key: str
    intent: str
    speaker: str
    text: dict[str, str]


def _phrase(key: str, intent: str, speaker: str, en: str, fr: str, es: str, ar: str, ru: str, uk: str) -> Phrase:
    return Phrase(key, intent, speaker, {"en": en, "fr": fr, "es": es, "ar": ar, "ru": ru, "uk": uk})


_O, _T = "officer", "traveller"

# fmt: off
PHRASES: tuple[Phrase, ...] = (
    # purpose_of_visit
    _phrase("pov-1", "purpose_of_visit", _O, "What is the purpose of your visit?",
            "Quel est le motif de votre visite ?", "¿Cuál es el motivo de su visita?",
            "ما هو الغرض من زيارتك؟", "Какова цель вашего визита?", "Яка мета вашого візиту?"),
    _phrase("pov-2", "purpose_of_visit", _O, "Are you travelling for business or for tourism?",
            "Voyagez-vous pour affaires ou pour le tourisme ?", "¿Viaja usted por negocios o por turismo?",
            "هل تسافر للعمل أم للسياحة؟", "Вы путешествуете по делам или с туристической целью?",
            "Ви подорожуєте у справах чи з туристичною метою?"),
    _phrase("pov-3", "purpose_of_visit", _O, "Who are you visiting in this country?",
            "Qui venez-vous voir dans ce pays ?", "¿A quién viene a visitar en este país?",
            "من ستزور في هذا البلد؟", "Кого вы навещаете в этой стране?", "Кого ви відвідуєте в цій країні?"),
    _phrase("pov-4", "purpose_of_visit", _T, "I am here to attend a business conference.",
            "Je suis ici pour assister à une conférence professionnelle.",
            "Estoy aquí para asistir a una conferencia de negocios.",
            "أنا هنا لحضور مؤتمر عمل.", "Я приехал на деловую конференцию.", "Я приїхав на ділову конференцію."),
    _phrase("pov-5", "purpose_of_visit", _T, "I came to visit my daughter and her family.",
            "Je suis venu rendre visite à ma fille et à sa famille.", "He venido a visitar a mi hija y a su familia.",
            "جئت لزيارة ابنتي وعائلتها.", "Я приехал навестить свою дочь и её семью.",
            "Я приїхав відвідати свою доньку та її родину."),
    _phrase("pov-6", "purpose_of_visit", _T, "We are tourists and want to see the old city.",
            "Nous sommes touristes et nous voulons visiter la vieille ville.",
            "Somos turistas y queremos ver el casco antiguo.", "نحن سياح ونريد أن نرى المدينة القديمة.",
            "Мы туристы и хотим посмотреть старый город.", "Ми туристи й хочемо побачити старе місто."),
    # length_of_stay
    _phrase("los-1", "length_of_stay", _O, "How long do you plan to stay?",
            "Combien de temps comptez-vous rester ?", "¿Cuánto tiempo piensa quedarse?",
            "كم من الوقت تنوي البقاء؟", "Как долго вы планируете здесь пробыть?",
            "Як довго ви плануєте тут перебувати?"),
    _phrase("los-2", "length_of_stay", _O, "How many days will you spend here?",
            "Combien de jours allez-vous passer ici ?", "¿Cuántos días va a pasar aquí?",
            "كم يوماً ستقضي هنا؟", "Сколько дней вы здесь проведёте?", "Скільки днів ви тут проведете?"),
    _phrase("los-3", "length_of_stay", _O, "Your visa allows a maximum stay of ninety days.",
            "Votre visa autorise un séjour de quatre-vingt-dix jours maximum.",
            "Su visado permite una estancia máxima de noventa días.",
            "تسمح لك تأشيرتك بالإقامة تسعين يوماً كحد أقصى.",
            "Ваша виза разрешает пребывание не более девяноста дней.",
            "Ваша віза дозволяє перебування не більше дев’яноста днів."),
    _phrase("los-4", "length_of_stay", _T, "I will stay for two weeks.",
            "Je vais rester deux semaines.", "Me quedaré dos semanas.", "سأبقى هنا لمدة أسبوعين.",
            "Я пробуду здесь две недели.", "Я пробуду тут два тижні."),
    _phrase("los-5", "length_of_stay", _T, "Only three days, I leave on Sunday.",
            "Seulement trois jours, je repars dimanche.", "Solo tres días, me voy el domingo.",
            "ثلاثة أيام فقط، سأغادر يوم الأحد.", "Всего три дня, я уезжаю в воскресенье.",
            "Лише три дні, я їду в неділю."),
    _phrase("los-6", "length_of_stay", _T, "I am staying until the end of the semester.",
            "Je reste jusqu'à la fin du semestre.", "Me quedo hasta el final del semestre.",
            "سأبقى حتى نهاية الفصل الدراسي.", "Я останусь до конца семестра.", "Я залишуся до кінця семестру."),
    # declaration
    _phrase("dec-1", "declaration", _O, "Do you have anything to declare?",
            "Avez-vous quelque chose à déclarer ?", "¿Tiene algo que declarar?", "هل لديك ما تصرح به؟",
            "Вам есть что задекларировать?", "Чи є у вас щось, що потрібно задекларувати?"),
    _phrase("dec-2", "declaration", _O, "Are you carrying more than ten thousand euros in cash?",
            "Transportez-vous plus de dix mille euros en espèces ?",
            "¿Lleva usted más de diez mil euros en efectivo?", "هل تحمل أكثر من عشرة آلاف يورو نقداً؟",
            "Вы везёте с собой более десяти тысяч евро наличными?",
            "Ви везете з собою понад десять тисяч євро готівкою?"),
    _phrase("dec-3", "declaration", _O, "Please open your suitcase and show me the bottles.",
            "Veuillez ouvrir votre valise et me montrer les bouteilles.",
            "Por favor, abra su maleta y enséñeme las botellas.", "من فضلك افتح حقيبتك وأرني الزجاجات.",
            "Пожалуйста, откройте чемодан и покажите мне бутылки.",
            "Будь ласка, відкрийте валізу й покажіть мені пляшки."),
    _phrase("dec-4", "declaration", _T, "I have two cartons of cigarettes and a bottle of whisky.",
            "J'ai deux cartouches de cigarettes et une bouteille de whisky.",
            "Llevo dos cartones de tabaco y una botella de whisky.", "معي كرتونتان من السجائر وزجاجة ويسكي.",
            "У меня два блока сигарет и бутылка виски.", "У мене два блоки сигарет і пляшка віскі."),
    _phrase("dec-5", "declaration", _T, "I have nothing to declare, only personal belongings.",
            "Je n'ai rien à déclarer, seulement des effets personnels.",
            "No tengo nada que declarar, solo efectos personales.", "ليس لدي ما أصرح به، فقط أغراض شخصية.",
            "Мне нечего декларировать, только личные вещи.", "Мені нічого декларувати, лише особисті речі."),
    _phrase("dec-6", "declaration", _T, "I am carrying fifteen thousand dollars in cash for my business.",
            "J'ai sur moi quinze mille dollars en espèces pour mon entreprise.",
            "Llevo quince mil dólares en efectivo para mi negocio.", "أحمل خمسة عشر ألف دولار نقداً من أجل عملي.",
            "Я везу пятнадцать тысяч долларов наличными для своего бизнеса.",
            "Я везу п’ятнадцять тисяч доларів готівкою для свого бізнесу."),
    # medical_need
    _phrase("med-1", "medical_need", _O, "Do you need a doctor or any medical help?",
            "Avez-vous besoin d'un médecin ou d'une aide médicale ?",
            "¿Necesita un médico o algún tipo de ayuda médica?", "هل تحتاج إلى طبيب أو إلى أي مساعدة طبية؟",
            "Вам нужен врач или какая-либо медицинская помощь?", "Вам потрібен лікар чи якась медична допомога?"),
    _phrase("med-2", "medical_need", _O, "Are you taking any medication we should know about?",
            "Prenez-vous des médicaments dont nous devrions être informés ?",
            "¿Toma algún medicamento del que debamos estar informados?", "هل تتناول أي أدوية يجب أن نعرف عنها؟",
            "Вы принимаете какие-либо лекарства, о которых нам следует знать?",
            "Чи приймаєте ви якісь ліки, про які нам слід знати?"),
    _phrase("med-3", "medical_need", _O, "Please sit down, a paramedic is on the way.",
            "Asseyez-vous, s'il vous plaît, un secouriste arrive.",
            "Siéntese, por favor, un paramédico está en camino.", "تفضل بالجلوس، المسعف في الطريق.",
            "Пожалуйста, присядьте, фельдшер уже в пути.", "Будь ласка, сідайте, фельдшер уже в дорозі."),
    _phrase("med-4", "medical_need", _T, "My son has a high fever and needs a doctor.",
            "Mon fils a une forte fièvre et a besoin d'un médecin.", "Mi hijo tiene fiebre alta y necesita un médico.",
            "ابني مصاب بحمى شديدة ويحتاج إلى طبيب.", "У моего сына высокая температура, ему нужен врач.",
            "У мого сина висока температура, йому потрібен лікар."),
    _phrase("med-5", "medical_need", _T, "I am diabetic and I need to keep my insulin cold.",
            "Je suis diabétique et je dois garder mon insuline au frais.",
            "Soy diabético y necesito mantener mi insulina fría.", "أنا مصاب بالسكري وأحتاج إلى إبقاء الأنسولين بارداً.",
            "У меня диабет, и мой инсулин нужно хранить в холоде.",
            "У мене діабет, і мій інсулін треба зберігати в холоді."),
    _phrase("med-6", "medical_need", _T, "I feel dizzy and I have chest pain.",
            "J'ai des vertiges et une douleur à la poitrine.", "Estoy mareado y me duele el pecho.",
            "أشعر بالدوار ولدي ألم في الصدر.", "У меня кружится голова и болит в груди.",
            "У мене паморочиться голова і болить у грудях."),
    # asylum_request
    _phrase("asy-1", "asylum_request", _O, "Do you wish to apply for international protection?",
            "Souhaitez-vous demander une protection internationale ?", "¿Desea solicitar protección internacional?",
            "هل ترغب في تقديم طلب للحماية الدولية؟", "Вы хотите подать заявление на международную защиту?",
            "Ви бажаєте подати заяву про міжнародний захист?"),
    _phrase("asy-2", "asylum_request", _O, "An interpreter will help you fill in the asylum form.",
            "Un interprète vous aidera à remplir le formulaire de demande d'asile.",
            "Un intérprete le ayudará a rellenar el formulario de asilo.", "سيساعدك مترجم في ملء استمارة اللجوء.",
            "Переводчик поможет вам заполнить заявление о предоставлении убежища.",
            "Перекладач допоможе вам заповнити заяву про надання притулку."),
    _phrase("asy-3", "asylum_request", _O, "Why are you afraid to return to your country?",
            "Pourquoi avez-vous peur de retourner dans votre pays ?", "¿Por qué tiene miedo de volver a su país?",
            "لماذا تخاف من العودة إلى بلدك؟", "Почему вы боитесь вернуться в свою страну?",
            "Чому ви боїтеся повернутися до своєї країни?"),
    _phrase("asy-4", "asylum_request", _T, "I want to ask for asylum here.",
            "Je veux demander l'asile ici.", "Quiero pedir asilo aquí.", "أريد أن أطلب اللجوء هنا.",
            "Я хочу попросить здесь убежища.", "Я хочу попросити тут притулку."),
    _phrase("asy-5", "asylum_request", _T, "I cannot go back, my family was threatened.",
            "Je ne peux pas rentrer, ma famille a été menacée.", "No puedo volver, mi familia fue amenazada.",
            "لا أستطيع العودة، فقد تعرضت عائلتي للتهديد.", "Я не могу вернуться, моей семье угрожали.",
            "Я не можу повернутися, моїй родині погрожували."),
    _phrase("asy-6", "asylum_request", _T, "I fled the war and I need protection.",
            "J'ai fui la guerre et j'ai besoin de protection.", "Huí de la guerra y necesito protección.",
            "هربت من الحرب وأحتاج إلى الحماية.", "Я бежал от войны, и мне нужна защита.",
            "Я втік від війни, і мені потрібен захист."),
    # document_request
    _phrase("doc-1", "document_request", _O, "May I see your passport, please?",
            "Puis-je voir votre passeport, s'il vous plaît ?", "¿Me permite ver su pasaporte, por favor?",
            "هل يمكنني رؤية جواز سفرك من فضلك؟", "Можно посмотреть ваш паспорт, пожалуйста?",
            "Можна подивитися ваш паспорт, будь ласка?"),
    _phrase("doc-2", "document_request", _O, "Please show me your visa and your residence permit.",
            "Veuillez me montrer votre visa et votre titre de séjour.",
            "Por favor, muéstreme su visado y su permiso de residencia.", "من فضلك أرني تأشيرتك وتصريح إقامتك.",
            "Пожалуйста, покажите мне вашу визу и вид на жительство.",
            "Будь ласка, покажіть мені вашу візу та посвідку на проживання."),
    _phrase("doc-3", "document_request", _O, "Do you have an invitation letter from your host?",
            "Avez-vous une lettre d'invitation de votre hôte ?", "¿Tiene una carta de invitación de su anfitrión?",
            "هل لديك رسالة دعوة من مضيفك؟", "У вас есть приглашение от принимающей стороны?",
            "Чи маєте ви запрошення від приймаючої сторони?"),
    _phrase("doc-4", "document_request", _T, "Here is my passport and my boarding pass.",
            "Voici mon passeport et ma carte d'embarquement.", "Aquí tiene mi pasaporte y mi tarjeta de embarque.",
            "تفضل، هذا جواز سفري وبطاقة صعودي إلى الطائرة.", "Вот мой паспорт и посадочный талон.",
            "Ось мій паспорт і посадковий талон."),
    _phrase("doc-5", "document_request", _T, "I lost my passport, I only have my identity card.",
            "J'ai perdu mon passeport, je n'ai que ma carte d'identité.",
            "He perdido mi pasaporte, solo tengo mi documento de identidad.",
            "فقدت جواز سفري، ليس معي سوى بطاقة هويتي.",
            "Я потерял паспорт, у меня есть только удостоверение личности.",
            "Я загубив паспорт, у мене є лише посвідчення особи."),
    _phrase("doc-6", "document_request", _T, "Which documents do I need to show you?",
            "Quels documents dois-je vous présenter ?", "¿Qué documentos tengo que enseñarle?",
            "ما الوثائق التي يجب أن أريك إياها؟", "Какие документы мне нужно вам показать?",
            "Які документи мені потрібно вам показати?"),
    # accommodation
    _phrase("acc-1", "accommodation", _O, "Where will you be staying during your visit?",
            "Où allez-vous loger pendant votre séjour ?", "¿Dónde se va a alojar durante su visita?",
            "أين ستقيم خلال زيارتك؟", "Где вы остановитесь во время визита?", "Де ви зупинитеся під час візиту?"),
    _phrase("acc-2", "accommodation", _O, "Do you have a hotel reservation?",
            "Avez-vous une réservation d'hôtel ?", "¿Tiene una reserva de hotel?", "هل لديك حجز في فندق؟",
            "У вас есть бронь в гостинице?", "У вас є бронювання в готелі?"),
    _phrase("acc-3", "accommodation", _O, "Please write the address of your accommodation here.",
            "Veuillez écrire ici l'adresse de votre hébergement.",
            "Por favor, escriba aquí la dirección de su alojamiento.", "من فضلك اكتب عنوان مكان إقامتك هنا.",
            "Пожалуйста, напишите здесь адрес, где вы остановитесь.",
            "Будь ласка, напишіть тут адресу, де ви зупинитеся."),
    _phrase("acc-4", "accommodation", _T, "I have booked a room at a hotel near the station.",
            "J'ai réservé une chambre dans un hôtel près de la gare.",
            "He reservado una habitación en un hotel cerca de la estación.", "حجزت غرفة في فندق قريب من المحطة.",
            "Я забронировал номер в гостинице рядом с вокзалом.", "Я забронював номер у готелі біля вокзалу."),
    _phrase("acc-5", "accommodation", _T, "I will stay with my cousin in his apartment.",
            "Je vais loger chez mon cousin, dans son appartement.", "Me quedaré con mi primo en su apartamento.",
            "سأقيم مع ابن عمي في شقته.", "Я буду жить у двоюродного брата в его квартире.",
            "Я житиму у двоюрідного брата в його квартирі."),
    _phrase("acc-6", "accommodation", _T, "I do not have a place to sleep tonight.",
            "Je n'ai pas d'endroit où dormir ce soir.", "No tengo dónde dormir esta noche.",
            "ليس لدي مكان أنام فيه الليلة.", "Мне сегодня негде ночевать.", "Мені сьогодні ніде ночувати."),
    # onward_travel
    _phrase("onw-1", "onward_travel", _O, "Do you have a return or onward ticket?",
            "Avez-vous un billet de retour ou de continuation ?",
            "¿Tiene un billete de vuelta o de continuación de viaje?",
            "هل لديك تذكرة عودة أو تذكرة لمواصلة السفر؟",
            "У вас есть обратный билет или билет для дальнейшего следования?",
            "Чи маєте ви зворотний квиток або квиток для подальшої подорожі?"),
    _phrase("onw-2", "onward_travel", _O, "Where will you travel after leaving this country?",
            "Où irez-vous après avoir quitté ce pays ?", "¿Adónde viajará después de salir de este país?",
            "إلى أين ستسافر بعد مغادرة هذا البلد؟", "Куда вы поедете после того, как покинете эту страну?",
            "Куди ви поїдете після того, як залишите цю країну?"),
    _phrase("onw-3", "onward_travel", _O, "Your connecting flight leaves from gate twelve.",
            "Votre vol de correspondance part de la porte douze.", "Su vuelo de conexión sale por la puerta doce.",
            "تقلع رحلتك التالية من البوابة رقم اثني عشر.", "Ваш стыковочный рейс вылетает от выхода номер двенадцать.",
            "Ваш пересадковий рейс вилітає від виходу номер дванадцять."),
    _phrase("onw-4", "onward_travel", _T, "I am only in transit to Canada.",
            "Je suis seulement en transit pour le Canada.", "Solo estoy en tránsito hacia Canadá.",
            "أنا في رحلة عبور إلى كندا فقط.", "Я здесь только транзитом в Канаду.", "Я тут лише транзитом до Канади."),
    _phrase("onw-5", "onward_travel", _T, "My train to Vienna leaves tomorrow morning.",
            "Mon train pour Vienne part demain matin.", "Mi tren a Viena sale mañana por la mañana.",
            "قطاري إلى فيينا يغادر صباح الغد.", "Мой поезд в Вену отправляется завтра утром.",
            "Мій потяг до Відня відправляється завтра вранці."),
    _phrase("onw-6", "onward_travel", _T, "I will fly home to Lagos next Friday.",
            "Je rentre chez moi à Lagos en avion vendredi prochain.",
            "Vuelvo a casa, a Lagos, en avión el próximo viernes.",
            "سأعود جواً إلى منزلي في لاغوس يوم الجمعة المقبل.", "В следующую пятницу я улетаю домой в Лагос.",
            "Наступної п’ятниці я летю додому до Лагоса."),
)
# fmt: on


def directions() -> list[tuple[str, str]]:
    """The ten (source, target) language pairs: English into each language, then each language into English."""
    return [("en", lang) for lang in LANGUAGES] + [(lang, "en") for lang in LANGUAGES]


def _assign(phrases: Sequence[Phrase], pairs: Sequence[tuple[str, str]], rng: random.Random) -> list[Phrase]:
    """One phrase per pair, each phrase used at most twice and never in both directions of one language."""
    while True:
        order = list(phrases)
        rng.shuffle(order)
        chosen = [order[index % len(order)] for index in range(len(pairs))]
        rng.shuffle(chosen)
        languages: dict[str, set[str]] = {}
        clash = False
        for phrase, (source, target) in zip(chosen, pairs, strict=True):
            other = target if source == "en" else source
            used = languages.setdefault(phrase.key, set())
            clash = clash or other in used
            used.add(other)
        if not clash:
            return chosen


def build_examples(seed: int = SEED) -> list[Example]:
    """Every example: for each intent, one phrase in each of the ten directions, in a seeded order.

    Args:
        seed: seeds the phrase assignment and the final order.

    Returns:
        ``len(INTENTS) * 10`` examples (80).
    """
    rng = random.Random(seed)
    pairs = directions()
    examples: list[Example] = []
    for intent in INTENTS:
        phrases = [phrase for phrase in PHRASES if phrase.intent == intent]
        shuffled_pairs = list(pairs)
        rng.shuffle(shuffled_pairs)
        for phrase, (source, target) in zip(_assign(phrases, shuffled_pairs, rng), shuffled_pairs, strict=True):
            reference = phrase.text[target]
            examples.append(
                Example(
                    id=f"triage-{source}-{target}-{phrase.key}",
                    question=phrase.text[source],
                    references=(reference,),
                    metadata={"pair": f"{source}-{target}", "speaker": phrase.speaker, "phrase": phrase.key},
                    target={"source_lang": source, "target_lang": target, "reference": reference, "intent": intent},
                )
            )
    rng.shuffle(examples)
    return examples


def write_data(path: Path | None = None, seed: int = SEED) -> int:
    """Writes the examples as JSONL to ``path`` (default: the shipped data file); returns how many."""
    return write_examples(path if path is not None else data_path(DATA_FILE), build_examples(seed))


def main() -> None:
    """Rewrites the shipped data file and says where."""
    count = write_data()
    print(f"wrote {count} examples to {data_path(DATA_FILE)}")


if __name__ == "__main__":
    main()
